"""Recovery of a validator that lost its safety record: sign nothing in a view it may have signed in.

Owns: `Recovery` (the probe, the reports counted per validator, and the view floor they give) and
the rule below. May not: sign, verify certificates (the replica does before it hands a report
in) or change the safety state (`SafetyRules.finish_recovery` does, durably).

Why: the safety record (last voted view, lock, the exact bytes last signed) is what keeps a
validator from signing two different votes, timeouts or proposals for one view. A validator
whose data directory was wiped, restored from an old backup or lost with a disk comes back with
no record; if it simply started over it could vote again in a view it already voted in, or, as
the leader of a view it already proposed in, propose a second block: equivocation by an honest
node, and with f Byzantine nodes helping, two conflicting commits. `bft testnet` writes every
validator's first record (the genesis state), so "no record" always means "lost"; CometBFT's
answer to the same problem is `double_sign_check_height`, which refuses to start if the node
finds its own signature in recent blocks; this one recovers on its own instead.

The rule: a recovering validator X signs nothing (votes, timeouts and proposals are refused with
`recovering`) but follows the chain, syncs blocks and forms no certificate of its own. It
broadcasts a `RecoveryProbe` with a nonce fresh for this start (again every base timeout) and
waits for `RecoveryReport`s carrying that nonce from `needed = n - quorum + f + 1` distinct
other validators (all 3 others at n = 4; 2f+1 at n = 3f+1). With `w` the highest view reported,
it saves last voted view = highest timeout view = w + 1 and the highest reported QC as its lock,
and from then on signs only in views above w + 1.

Why that is enough: let V be the highest view X signed in before it lost its record. X was in
view V, so a certificate (QC or TC) for view V - 1 existed before X lost its record: X entered
V through one, or joined V on f + 1 timeouts, one of them from an honest validator that did (the
first honest validator in any view entered it through a certificate for the view before). That
certificate has `quorum` signers, at most f Byzantine and at most one X, so at least
`quorum - f - 1` honest validators other than X signed in view V - 1 and have been in view
V - 1 or above ever since (honest views never go back). Among any `needed` of the n - 1 others
at least one of them answers, and its report, made after the probe (the nonce), names a view
w >= V - 1. So V <= w + 1, and X signs only in views it never signed in. A Byzantine report can
only raise w (X then waits longer to sign: liveness, never safety); reports for a view more
than `max_views_ahead` above their own certificates are refused so that a liar cannot push the
floor out of reach. The lock: the same counting over the voters of any committed block's
commit chain (b'' of a three-chain, b' of a two-chain) shows one of the `needed` reporters holds
a QC at least as high as the lock that protects it, so X's new lock is at least as strong as the
one it lost.

What it costs: a wiped validator rejoins only once `needed` others answer. In a 4-validator
network that is every other validator; if one of them is down or Byzantine and silent, the wiped
one keeps following the chain without signing until it answers (the network itself commits on,
with the other three). That is the price of never double-signing.
"""

from __future__ import annotations

from dataclasses import dataclass

from bft.core.messages import QuorumCert, RecoveryProbe, RecoveryReport, TimeoutCert
from bft.core.refusals import RefusalReason, Refused
from bft.core.types import ValidatorIndex, ValidatorSet, View


@dataclass(frozen=True, slots=True)
class RecoveryDone:
    """The outcome: sign only in views above `floor`; lock on `high_qc`."""

    floor: View
    high_qc: QuorumCert
    high_tc: TimeoutCert | None
    reporters: frozenset[ValidatorIndex]


def reports_needed(validators: ValidatorSet) -> int:
    """Distinct other validators whose reports bound the views we may have signed in."""
    return validators.n - validators.quorum + validators.f + 1


class Recovery:
    """One recovery, from the start of a validator without a record until it may sign again."""

    def __init__(
        self,
        validators: ValidatorSet,
        me: ValidatorIndex,
        nonce: bytes,
        resend_s: float,
        max_views_ahead: int,
        now: float,
    ) -> None:
        self._validators = validators
        self._me = me
        self._nonce = nonce
        self._resend_s = resend_s
        self._max_views_ahead = max_views_ahead
        self._reports: dict[ValidatorIndex, RecoveryReport] = {}
        self._next_probe_at = now
        self.needed = reports_needed(validators)
        self.done: RecoveryDone | None = None

    @property
    def deadline(self) -> float | None:
        """When the next probe is due (None once done)."""
        return None if self.done is not None else self._next_probe_at

    @property
    def reporters(self) -> frozenset[ValidatorIndex]:
        return frozenset(self._reports)

    def probe(self, now: float) -> RecoveryProbe | None:
        """The probe to broadcast if one is due, re-armed for one `resend_s` later."""
        if self.done is not None or now < self._next_probe_at:
            return None
        self._next_probe_at = now + self._resend_s
        return RecoveryProbe(self._nonce)

    def on_report(self, sender: ValidatorIndex, report: RecoveryReport) -> Refused | None:
        """Count a report whose certificates the caller verified; `done` is set once enough
        distinct validators answered this start's probe."""
        if self.done is not None:
            return Refused(RefusalReason.NOT_REQUESTED, "recovery is over")
        if report.nonce != self._nonce:
            return Refused(RefusalReason.NOT_REQUESTED, "a report to another probe (an earlier start?)")
        if sender == self._me or not self._validators.contains(sender):
            return Refused(RefusalReason.UNKNOWN_SENDER, f"report from {sender}")
        certified = max(report.high_qc.view, report.high_tc.view if report.high_tc is not None else 0)
        if report.view > certified + 1 + self._max_views_ahead:
            detail = f"reports view {report.view}, {report.view - certified} above its certificates"
            return Refused(RefusalReason.FUTURE_VIEW, detail)
        previous = self._reports.get(sender)
        if previous is None or report.view > previous.view:
            self._reports[sender] = report
        if len(self._reports) >= self.needed:
            self.done = self._outcome()
        return None

    def _outcome(self) -> RecoveryDone:
        reports = self._reports.values()
        highest_view = max(r.view for r in reports)
        high_qc = max((r.high_qc for r in reports), key=lambda qc: qc.view)
        tcs = [r.high_tc for r in reports if r.high_tc is not None]
        high_tc = max(tcs, key=lambda tc: tc.view) if tcs else None
        return RecoveryDone(View(highest_view + 1), high_qc, high_tc, frozenset(self._reports))
