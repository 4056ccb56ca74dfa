"""The one error type of the input pipelines, and how their failures while reading become it."""
import contextlib
import re

import tensorflow as tf

from glow_tf.files import error_text

# The first datum of every record check's assertion (``checked``): how ``reading`` knows one.
RECORD_CHECK = "glow_tf record check"


class DataError(ValueError):
    """Bad or missing data: the message names the file (or folder) and what was wrong.

    A ValueError, so callers that validate arguments with ``except ValueError`` catch it too.
    """


def checked(value, condition, where, what):
    """``value``, computed only after asserting ``condition`` on a streamed record.

    ``where`` (the file, a string tensor) and ``what`` (the rule broken) make the message, which
    ``reading`` turns into a DataError '<where>: <what>'; ``what`` may be a list of data.
    """
    data = [RECORD_CHECK, where] + (what if isinstance(what, list) else [what])
    with tf.control_dependencies([tf.debugging.Assert(condition, data)]):
        return tf.identity(value)


@contextlib.contextmanager
def reading(description, find_damage=None):
    """Within it, the pipelines' failures while reading are DataErrors.

    A record check's failure (``checked``) names the file and the check. TensorFlow's DataLossError
    (a file cut short or damaged) names no file, so ``find_damage()`` (the source's, if any)
    looks for one: a message naming it, or None; ``description`` says where the data came from.
    """
    try:
        yield
    except tf.errors.DataLossError as e:
        damage = find_damage() if find_damage else None
        raise DataError(damage or f"{description}: a file is damaged ({error_text(e)}), and TensorFlow's "
                                  "reader does not say which") from None
    except tf.errors.InvalidArgumentError as e:
        if RECORD_CHECK not in e.message:
            raise
        # The assertion's data, printed as '[RECORD_CHECK] [where] [what...]' on one line, C-escaped.
        data = e.message[e.message.index(RECORD_CHECK) + len(RECORD_CHECK):].split("\n")[0]
        where, *what = data.removeprefix("] [").removesuffix("]").split("] [")
        raise DataError(re.sub(r"\\(.)", r"\1", f"{where}: {' '.join(what)}")) from None
