"""Limits on a spec and the values in it (no pydantic, so the CLI can import them cheaply).

Input limits keep hostile files cheap to refuse (bounded bytes, no aliases, bounded depth and
item counts). Value limits keep every number inside the column types of the bundle tables it
lands in (runner/bundle/schemas.py: epochs, batch_size, step and iterations are int32) and
inside what the workload can act on (numpy's legacy seeding, which Keras uses, takes < 2**32).
"""

MAX_RUNS = 20_000

# The spec file itself.
MAX_SPEC_BYTES = 1_000_000
MAX_DEPTH = 32  # nested mappings/lists; a spec needs about 6
MAX_ITEMS = 20_000  # entries in one mapping or list (a grid axis of MAX_RUNS values fits)
MAX_NODES = 200_000  # tokens in the whole document
MAX_NAME_CHARS = 100  # experiment and sweep names (they name folders)
MAX_TEXT_CHARS = 10_000  # descriptions and other free text
MAX_NUMBER_CHARS = 50  # digits of one number (Python refuses int('1' * 4301) anyway)

# Values, each well inside the int32/int64 columns it is written to.
INT32_MAX = 2**31 - 1
MAX_EPOCHS = 100_000
MAX_BATCH = 1_000_000
MAX_STEPS = 10_000_000  # steps_per_epoch, warmup_steps, latency iterations
MAX_SEED = 2**32 - 1  # seed + repeats - 1 must not exceed it
MAX_SYNTHETIC_IMAGES = 100_000  # per split of a synthetic dataset (about 300 MB of pixels)
MAX_CLASSES = 100_000
MAX_WIDTH = 1_000_000  # classifier hidden widths, resize size
