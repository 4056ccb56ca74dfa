"""Flow layers (each a tf_keras Layer with forward/inverse and log-determinants) and the
original's network blocks."""
from glow_tf.layers.actnorm import ActNorm
from glow_tf.layers.base import (PRECISIONS, DataDependentInit, FlowChain, FlowLayer, check_precision,
                                 data_dependent_init, parameters_as, plain_ops, precision_as, read)
from glow_tf.layers.coupling import AdditiveCoupling, AffineCoupling, Coupling, CouplingNetwork, make_coupling
from glow_tf.layers.nn import ConvActNorm, LinearZeros, ZeroConv2D
from glow_tf.layers.scan import FlowScan
from glow_tf.layers.permute import (InvertibleConv1x1, InvertibleConv1x1LU, Reverse, Shuffle,
                                    make_permutation)
from glow_tf.layers.split import Split, TopPrior
from glow_tf.layers.squeeze import Squeeze, squeeze2d, unsqueeze2d

__all__ = ["PRECISIONS", "ActNorm", "DataDependentInit", "AdditiveCoupling", "AffineCoupling", "ConvActNorm", "Coupling", "CouplingNetwork",
           "FlowChain", "FlowLayer", "FlowScan", "InvertibleConv1x1", "InvertibleConv1x1LU", "LinearZeros",
           "Reverse", "Shuffle", "Split", "Squeeze", "TopPrior", "ZeroConv2D",
           "check_precision", "data_dependent_init", "make_coupling", "make_permutation", "parameters_as", "plain_ops",
           "precision_as", "read", "squeeze2d",
           "unsqueeze2d"]
