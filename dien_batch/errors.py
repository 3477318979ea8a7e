"""Errors that carry the process exit code documented in `dien-batch --help` and the README."""

EXIT_CODES = {
    0: "ok",
    1: "unexpected error (a bug: rerun with -v for the traceback and report it)",
    2: "usage or configuration error (bad option, missing file, missing Java or CUDA)",
    3: "data validation failed (structural problem in the input, or built data broke an expectation)",
    4: "quality gate failed (nightly: a configured gate tripped)",
}


class DienBatchError(Exception):
    """Base class: a failure the user can act on, reported without a traceback."""

    exit_code = 1


class UsageError(DienBatchError):
    exit_code = 2


class DataValidationError(DienBatchError):
    exit_code = 3


class QualityGateError(DienBatchError):
    exit_code = 4
