"""glow_tf's command-line programs (glow-train, glow-sample, glow-export) and what they share.

They share how a command line fails: one line on stderr, ``PROG: error: ...`` naming the
flag, what was expected and what was seen, and exit status 1; never the whole help (``--help``
shows that). For example, with glow-train:

    --log_steps 1     glow-train: error: --log_steps: expected no value (a boolean flag: --log_steps,
                      --nolog_steps or --log_steps=false), got '1'
    --depth x         glow-train: error: --depth: expected an integer, got 'x'
    --log_step        glow-train: error: --log_step: expected one of the flags --help lists (did you
                      mean --log_steps?), got an unknown flag
    x                 glow-train: error: expected only flags (--name value or --name=value), got the argument 'x'
    --flagfile f      glow-train: error: --flagfile f, line 3: expected one flag per line (--name=value or
                      --name), got '--depth 4'   (or: expected a readable file of flags, got 'f' (No such file ...))

A ValueError out of a program (a bad flag combination, unreadable data, a damaged checkpoint:
its message says what was expected) or a failed write (``glow_tf.errors.WriteError``: a full
disk, its message says what is intact) ends it the same way, without a traceback. absl's INFO log lines (TensorFlow's
about every checkpoint written, every SavedModel variable) are hidden unless --verbosity is given.

Importing this package prepares the process for a program before TensorFlow loads (a quiet
console, Keras 2, the XLA flags: ``console.prepare``); nothing outside glow_tf/cli imports it.
"""
from glow_tf.cli import console

console.prepare()  # first: TensorFlow reads this environment when it loads

import difflib  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402

from absl import app, flags, logging  # noqa: E402

from glow_tf.errors import WriteError  # noqa: E402

# absl's messages for a value it could not parse or validate, and for a flag given no value.
_BAD_VALUE = re.compile(r"flag --(?P<name>[^=\s]+)=(?P<value>.*?): ")
_MISSING_VALUE = re.compile(r"Missing value for flag -+(?P<name>\S+)")
_REQUIRED = "must have a value other than None"  # absl's validator of flags.mark_flag_as_required


def program_name() -> str:
    """The program as the user called it: 'glow-train', 'train.py' or 'python -m glow_tf.export'."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is not None and spec.name != "__main__":
        return f"python -m {spec.name.removesuffix('.__main__')}"  # a package's __main__: python -m PACKAGE
    return os.path.basename(sys.argv[0])


def error(message) -> SystemExit:
    """The one-line exit of a bad command line: ``PROG: error: message``, status 1."""
    return SystemExit(f"{program_name()}: error: {message}")


def expected_value(flag) -> str:
    """What a flag's value may be, in words: 'an integer', 'one of a, b', 'true or false'."""
    if flag.boolean:
        return f"true or false (or --{flag.name} / --no{flag.name} alone)"
    if isinstance(flag.parser, flags.EnumParser):
        return "one of " + ", ".join(flag.parser.enum_values)
    return flag.parser.syntactic_help or "a value"


def unknown_flag_message(name, flag_values) -> str:
    """An unknown flag, with the defined ones it may have been meant as (difflib's close matches)."""
    close = difflib.get_close_matches(name, list(flag_values), n=3)
    hint = f" (did you mean {', '.join('--' + c for c in close)}?)" if close else ""
    return f"--{name}: expected one of the flags --help lists{hint}, got an unknown flag"


def flag_error_message(e: Exception, flag_values) -> str:
    """absl's parse error ``e`` as '--flag: expected ..., got ...' (absl's own line for other errors)."""
    if isinstance(e, flags.UnrecognizedFlagError):
        return unknown_flag_message(e.flagname, flag_values)
    text = str(e)
    match = _BAD_VALUE.match(text) or _MISSING_VALUE.match(text)
    if match is None or match.group("name") not in flag_values:
        return text
    flag = flag_values[match.group("name")]
    expected, value = expected_value(flag), match.groupdict().get("value")
    if value is None:
        return f"--{flag.name}: expected {expected}, got no value"
    if _REQUIRED in text:
        return f"--{flag.name}: expected {expected} (the flag is required), got none"
    return f"--{flag.name}: expected {expected}, got {value!r}"


def _boolean_flag(token, flag_values):
    """The boolean flag that ``token`` sets ('--log_steps', '--nolog_steps', '-log_steps'), else None."""
    if not token.startswith("-") or "=" in token:
        return None
    name = token.lstrip("-")
    for candidate in (name, name[2:] if name.startswith("no") else None):
        if candidate in flag_values and flag_values[candidate].boolean:
            return candidate
    return None


def stray_argument_message(argument, argv, flag_values) -> str:
    """A positional argument; after a boolean flag (``--log_steps 1``) it was meant as its value."""
    for token, following in zip(argv, argv[1:]):
        name = _boolean_flag(token, flag_values)
        if following == argument and name:
            return (f"--{name}: expected no value (a boolean flag: --{name}, --no{name} or --{name}=false), "
                    f"got {argument!r}")
    return f"expected only flags (--name value or --name=value), got the argument {argument!r}"


def _flagfile_paths(argv):
    """The files of the --flagfile arguments in ``argv`` ('--flagfile F', '--flagfile=F', one dash too)."""
    paths, args = [], iter(argv[1:])
    for arg in args:
        if arg == "--":
            break
        name, equals, value = arg.partition("=")
        if name in ("--flagfile", "-flagfile"):
            paths.append(value if equals else next(args, ""))
    return paths


def _check_flagfile(path, reading=()):
    """A one-line error (SystemExit) unless ``path`` can be read and each of its lines is one flag.

    The rules are absl's: blank lines and lines starting with '#' or '//' are skipped, a line is
    one argument (so '--depth 4' is the unknown flag 'depth 4'), '--flagfile=F' includes F.
    ``reading``: the files that include this one (an inclusion loop is absl's to report).
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"--flagfile: expected a readable file of flags, got {path!r} "
                    f"({getattr(e, 'strerror', None) or e})") from None
    for number, line in enumerate((line.strip() for line in lines), start=1):
        if not line or line.startswith(("#", "//")):
            continue
        name, equals, value = line.partition("=")
        if name in ("--flagfile", "-flagfile") and equals:
            if value not in reading:
                _check_flagfile(value, reading + (path,))
        elif not line.startswith("-") or any(c.isspace() for c in name):
            raise error(f"--flagfile {path}, line {number}: expected one flag per line (--name=value or --name), "
                        f"got {line!r}")


def parse_flags(argv, flag_values=flags.FLAGS, expand_argv=None, take_arguments=None):
    """Parses ``argv`` into ``flag_values``; [program] on success, else SystemExit with one line.

    Args:
      expand_argv: argv -> argv before absl parses it (glow-train writes out the original's
        abbreviations); its ValueError is a one-line error.
      take_arguments: [positional arguments] -> those the program does not take (glow-sample
        takes the second image of '--interpolate A B'); by default it takes none.
    """
    for path in _flagfile_paths(argv):
        _check_flagfile(path)
    try:
        argv = expand_argv(argv) if expand_argv else argv
        arguments = flag_values(argv)[1:]
    except (flags.Error, ValueError) as e:  # absl raises a bare ValueError for '--noflag=value'
        raise error(flag_error_message(e, flag_values)) from None
    arguments = take_arguments(arguments) if take_arguments else arguments
    if arguments:
        raise error(stray_argument_message(arguments[0], argv, flag_values))
    return argv[:1]


def define_original_checkpoint_flags(instead_of, module_name):
    """--openai_checkpoint and --hparams, for a program whose model comes from --INSTEAD_OF or from
    an original OpenAI checkpoint; ``module_name``: the program's module (its --help lists them)."""
    flags.DEFINE_string("openai_checkpoint", None, f"Instead of --{instead_of}: prefix of an original OpenAI "
                        "Glow checkpoint (e.g. logs/model_best_loss.ckpt); needs --hparams.", module_name=module_name)
    flags.DEFINE_string("hparams", None, "With --openai_checkpoint: the original's hps as JSON or its "
                        "logs/train.txt (first line = hps).", module_name=module_name)


def original_checkpoint(instead_of, use_ema):
    """The Glow of --openai_checkpoint and --hparams, or None when --INSTEAD_OF names the model;
    a ValueError unless exactly one of the two is given (and --hparams with the first)."""
    given = flags.FLAGS[instead_of].value is not None
    if given == (flags.FLAGS.openai_checkpoint is not None):
        raise ValueError(f"expected exactly one of --{instead_of} and --openai_checkpoint, got "
                         f"{'both' if given else 'neither'}")
    if given:
        return None
    if flags.FLAGS.hparams is None:
        raise ValueError("--hparams: expected the original's hps (JSON or train.txt) with --openai_checkpoint, got none")
    from glow_tf import openai
    return openai.load_checkpoint(flags.FLAGS.openai_checkpoint, flags.FLAGS.hparams, use_ema=use_ema)


def _help_describes(module_name):
    """absl's --help shows the docstring and flags of __main__ (train.py, the glow-train script);
    the program and its flags live in ``module_name``: those are the ones to show."""
    sys.modules["__main__"].__doc__ = sys.modules[module_name].__doc__
    for flag in flags.FLAGS.flags_by_module_dict().get(module_name, []):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def run(main, expand_argv=None, take_arguments=None):
    """``absl.app.run`` of ``main()`` (no arguments) with one-line errors; see the module docstring."""
    _help_describes(main.__module__)

    def absl_main(_):
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)
        try:
            main()
        except (ValueError, WriteError) as e:
            raise error(e) from None

    app.run(absl_main, flags_parser=lambda argv: parse_flags(argv, flags.FLAGS, expand_argv, take_arguments))
