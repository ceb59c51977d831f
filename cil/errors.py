"""User-facing errors: the CLI prints their message on one line and exits with code 2."""


class UserError(Exception):
    """A mistake in what the user asked for (a name, a value, a missing dataset).

    The message must be one line that says what is wrong and, where it helps, what is valid.
    """


class StorageError(UserError):
    """The operating system refused a write cil makes (a full disk, a read-only place, no permission, a link
    where cil writes): one line naming the path and the reason; the CLI exits with code 74."""

    def __init__(self, path: object, reason: str, advice: str = ""):
        self.path, self.reason, self.advice = path, reason, advice
        super().__init__(f"cannot write {path}: {reason}" + (f"; {advice}" if advice else ""))


def did_you_mean(name: str, valid: list[str]) -> str:
    """'valid: a, b, c' with the closest match first when there is one."""
    import difflib

    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{hint}; valid: {', '.join(sorted(valid))}"


class ReportedInterrupt(KeyboardInterrupt):
    """Ctrl-C or SIGTERM after the interrupted run or sweep has said what was saved and how to continue."""


class TrainingDiverged(Exception):
    """A loss term became NaN or infinite (checked on each epoch's mean, so no mini-batch waits for it)."""

    def __init__(self, step: int, epoch: int, part: str, value: float):
        self.step, self.epoch, self.part, self.value = step, epoch, part, value
        super().__init__(
            f"training diverged at step {step}, epoch {epoch}: loss part '{part}' is {value} "
            f"(its mean over the epoch); lower optim.lr or check the loss"
        )


class RunDiverged(UserError):
    """A run stopped by ``TrainingDiverged``; its completed steps are saved (status "diverged")."""


class PeerLost(RuntimeError):
    """A collective of a data-parallel run failed because another of its processes stopped (killed, crashed).
    The surviving processes exit quietly (code 75); the launcher says which process died and how to resume."""
