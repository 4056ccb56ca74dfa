"""glow-demo (and python -m glow_tf.demo): the interactive web page over a trained Glow, as the original's demo/.

    glow-demo --model demo_out/saved_model           # after `make demo`; open http://127.0.0.1:5050/
    glow-demo --model LOGDIR --port 8000             # a training run's latest checkpoint
    glow-demo --openai_checkpoint PREFIX --hparams FILE --directions z_manipulate.npy --problem ''

The page draws random samples (temperature slider, class), encodes an upload or a held-out image
next to its reconstruction, mixes the latents of two images and moves an image's latent along
attribute directions; glow_tf/demo/ says how. --model is what glow-sample takes (a SavedModel, a
training logdir, its checkpoints/ directory or a checkpoint prefix); --openai_checkpoint with
--hparams an original OpenAI checkpoint, as glow-export takes it.

The held-out images to pick come from --problem (default digits, the embedded data set of `make
demo`); so do the attribute directions, unless --directions names a file in the original's
z_manipulate.npy format. When the default problem cannot be read for this model, the page offers
uploads only and says why. The server listens on 127.0.0.1 (this machine only) unless --host
says otherwise, reads no file a request names, writes none, and caps uploads at --max_upload_mb.
"""
import ipaddress

from absl import flags, logging

from glow_tf import cli, latents, sampling
from glow_tf.demo import attributes, heldout
from glow_tf.demo.api import DemoApi
from glow_tf.demo.server import DemoServer
from glow_tf.layers import PRECISIONS

FLAGS = flags.FLAGS
MAX_EXAMPLES = 16


def _define_flags():
    """The flags, defined when the program runs (glow-sample and glow-export define some of the same names)."""
    flags.DEFINE_string("model", None, "SavedModel directory, glow_tf training logdir, checkpoints directory "
                        "or checkpoint prefix.")
    cli.define_original_checkpoint_flags("model", __name__)
    flags.DEFINE_bool("use_ema", True, "For checkpoints: use the Polyak (EMA) weights when present.")
    flags.DEFINE_enum("precision", "float32", list(PRECISIONS), "For checkpoints: what the coupling networks "
                      "compute in. A SavedModel computes in the precision it was exported with.")
    flags.DEFINE_integer("batch_size", 64, "Images per model call (the class means of --problem).")
    flags.DEFINE_string("host", "127.0.0.1", "Address to listen on. The default is this machine only; "
                        "0.0.0.0 (every interface) lets anyone who can reach this machine use the page.")
    flags.DEFINE_integer("port", 5050, "Port to listen on (the original demo's); 0: a free port, printed.",
                         lower_bound=0, upper_bound=65535)
    flags.DEFINE_string("directions", None, "Attribute directions in the original's z_manipulate.npy format: "
                        "float32 [K, D], D the flattened latent, already scaled by 1.6. Default: one per class "
                        "of --problem.")
    flags.DEFINE_list("attribute_names", [], "With --directions: a name per row (default: the original's 40 "
                      "CelebA attributes for a file of 40 rows, else 'direction k').")
    flags.DEFINE_string("problem", "digits", "Labelled data set (a glow_tf.data problem) of the held-out "
                        "images the page offers and of the class directions; '' for none.")
    flags.DEFINE_string("data_dir", "", "Data directory of --problem ('' = its default).")
    flags.DEFINE_integer("attribute_images", -1, "Held-out images the class directions are averaged over "
                         "(-1: the problem's test split).")
    flags.DEFINE_integer("examples", 8, "Held-out images offered on the page.", lower_bound=0,
                         upper_bound=MAX_EXAMPLES)
    flags.DEFINE_float("max_upload_mb", 10.0, "Largest image file accepted, in MB (10**6 bytes).",
                       lower_bound=0.001)


def _served():
    """The sampling.ServedGlow of --model or --openai_checkpoint."""
    model = cli.original_checkpoint("model", use_ema=FLAGS.use_ema)
    precision = FLAGS.precision if FLAGS["precision"].present else ""
    if model is None:
        return sampling.load_model(FLAGS.model, use_ema=FLAGS.use_ema, batch_size=FLAGS.batch_size,
                                   precision=precision)
    return sampling.ServedGlow.from_model(model, FLAGS.batch_size, precision or "float32")


def _heldout(served):
    """(heldout.HeldOut of --problem or None, why there is none). The default problem may not fit
    the model: then the page does without; a --problem given that cannot be read is an error."""
    if not FLAGS.problem:
        return None, "--problem ''"
    try:
        return heldout.read_heldout(served, FLAGS.problem, FLAGS.data_dir, FLAGS.attribute_images, FLAGS.examples,
                                    class_means=FLAGS.directions is None), ""
    except ValueError as e:
        if FLAGS["problem"].present:
            raise ValueError(f"--problem {FLAGS.problem}: {e}") from None
        logging.warning("no held-out images or class directions: --problem %s: %s", FLAGS.problem, e)
        return None, f"--problem {FLAGS.problem}: {e}"


def _attributes(served, held, why_not):
    size = latents.size(served.eps_shapes)
    if FLAGS.directions is not None:
        return attributes.load_directions(FLAGS.directions, size, FLAGS.attribute_names)
    if held is None:
        return attributes.no_attributes(size, f"no labelled images to compute them from ({why_not}); start "
                                              "glow-demo with --directions z_manipulate.npy or --problem NAME")
    return attributes.from_class_means(held.means, held.counts, held.description)


def _server(api):
    try:
        return DemoServer(api, FLAGS.host, FLAGS.port)
    except OSError as e:
        raise ValueError(f"--host/--port: expected an address to listen on, got {FLAGS.host}:{FLAGS.port} "
                         f"({e.strerror or e})") from None


def _is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _demo():
    served = _served()
    held, why_not = _heldout(served)
    api = DemoApi(served, _attributes(served, held, why_not), held.examples if held else None,
                  held.labels if held else None, max_upload_bytes=int(FLAGS.max_upload_mb * 1e6),
                  name=FLAGS.model or FLAGS.openai_checkpoint)
    server = _server(api)
    if not _is_loopback(FLAGS.host):
        logging.warning("listening on %s: anyone who can reach this machine can use the demo", FLAGS.host)
    print(f"glow-demo: serving {api.name} at {server.url} (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main():
    """The glow-demo console script and python -m glow_tf.demo."""
    _define_flags()
    cli.run(_demo)
