"""Ways to damage a committed run record, shared by the records and reuse tests (not a test module)."""

from supcon import workdir


def truncate_point(record):
    """point.json cut in half: not JSON."""
    text = (record / workdir.POINT).read_text()
    (record / workdir.POINT).write_text(text[: len(text) // 2])


def garble_result(record):
    """result.json truncated mid-object: not JSON."""
    (record / workdir.RESULT).write_text('{"eval/top1": 0.6, "eval/top5":\n')


def env_list(record):
    """env.json a JSON list, not an object."""
    (record / workdir.ENV).write_text("[1, 2]\n")
