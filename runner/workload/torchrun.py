"""`python -m runner.workload.torchrun ARGS`: torchrun (`torch.distributed.run`) with the workload's exit codes.

A PyTorch data-parallel run is N replica processes started by torchrun. Plain torchrun exits 1
whenever a replica fails, which would hide why: here the launcher exits with the workload's own
code (2 bad input, 3 the run failed: the reason is in the leader's events), or 128 + the signal
that stopped it. Everything else is torchrun's, unchanged: same arguments, same rendezvous.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

EXIT_BAD_INPUT, EXIT_RUN_FAILED = 2, 3


def exit_code(codes: Sequence[int]) -> int:
    """The launcher's exit code from the failed replicas' codes (negative: killed by a signal)."""
    for wanted in (EXIT_BAD_INPUT, EXIT_RUN_FAILED):
        if wanted in codes:
            return wanted
    first = codes[0] if codes else 1
    return 128 - first if first < 0 else first


def main(argv: Sequence[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        run(args)
    except ChildFailedError as e:
        return exit_code([f.exitcode for _, f in sorted(e.failures.items())])
    except SignalException as e:  # the engine stopped the run: torchrun stopped every replica
        return 128 + int(e.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
