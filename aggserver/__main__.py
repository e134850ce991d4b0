import signal
import sys

# A history writer asked to stop while still importing must still drain the outbox, not die
# with the default action: note the signal now, before the slow imports (see serve_writer).
STOPPED_EARLY: list[int] = []
if sys.argv[1:2] == ["history-writer"]:
    signal.signal(signal.SIGTERM, lambda signum, _frame: STOPPED_EARLY.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: STOPPED_EARLY.append(signum))

from aggserver.cli import main  # noqa: E402

main()
