"""What the demo takes from a labelled data set's held-out images: a few to pick on the page, and
the class means that become attribute directions (``attributes.from_class_means``)."""
import dataclasses

import numpy as np

from glow_tf import sampling


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """examples: uint8 [N, H, W, C], labels: int32 [N], the first N held-out images; means [n_y, D]
    and counts [n_y] (``sampling.class_mean_latents``) over ``description``, or None."""
    examples: np.ndarray
    labels: np.ndarray
    means: np.ndarray
    counts: np.ndarray
    description: str


def read_heldout(served, problem, data_dir="", n_images=-1, n_examples=8, class_means=True) -> HeldOut:
    """The first ``n_examples`` held-out images of ``problem`` and, with ``class_means``, the class
    means of its first ``n_images`` (-1: its test split; without: means and counts are None, and
    only the first batch is read). DataError (a ValueError) when the data cannot be read;
    ValueError when they do not fit the model."""
    datasets = sampling.heldout_datasets(served, problem, data_dir, n_images)
    examples, labels = [], []

    def keeping_examples(batches):
        for x, y in batches:
            kept = n_examples - sum(map(len, examples))
            if kept > 0 or not examples:  # (one empty slice with --examples 0)
                examples.append(np.asarray(x)[:kept])
                labels.append(np.asarray(y)[:kept])
            yield x, y

    means = counts = None
    with datasets.reading():
        if class_means:
            means, counts = sampling.class_mean_latents(served, keeping_examples(datasets.test), datasets.info.n_y)
        else:
            next(keeping_examples(datasets.test.take(1)), None)
    return HeldOut(np.concatenate(examples), np.concatenate(labels).astype(np.int32), means, counts,
                   f"{datasets.info.n_test:,} held-out images of {problem}")
