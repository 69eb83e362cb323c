"""View synchronisation: timeouts, timeout certificates and SyncInfo.

Owns: collecting verified timeouts (the f+1 join signal and the 2f+1 TC), signing our own
timeout through the safety rules, the highest TC (journaled before it is used), and when to
send a lagging peer our certificates (at most once per view of ours and base timeout).
May not: enter views or apply QCs (the replica does, with what this returns).

Why it exists: silence is ambiguous. A replica that hears nothing from a leader cannot tell a
crashed leader from a slow network, so it guesses (a timeout), and replicas that guessed must
agree to move on together: f+1 timeouts prove that at least one honest replica gave up, 2f+1
form the certificate the next leader justifies its proposal with.
"""

from __future__ import annotations

from bft.core.actions import Action, Broadcast, Refusal, Send
from bft.core.certs import Certifier
from bft.core.config import ReplicaConfig
from bft.core.journal import BlockJournal
from bft.core.messages import QuorumCert, SyncInfo, Timeout, TimeoutCert
from bft.core.refusals import Refused, Subject
from bft.core.safety import SafetyRules
from bft.core.types import ValidatorIndex, View
from bft.core.votes import TimeoutCollector


class ViewSync:
    def __init__(
        self, config: ReplicaConfig, certifier: Certifier, safety: SafetyRules, journal: BlockJournal
    ) -> None:
        self._config = config
        self._certifier = certifier
        self._safety = safety
        self._journal = journal
        self._timeouts = TimeoutCollector(config.validators)
        self.last_tc = journal.high_tc()
        self._synced_peer: dict[ValidatorIndex, tuple[View, float]] = {}

    def check_sync_info(self, info: SyncInfo) -> Refused | None:
        refused = self._certifier.check_qc(info.high_qc)
        if refused is None and info.high_tc is not None:
            refused = self._certifier.check_tc(info.high_tc)
        return refused

    def add_timeout(self, timeout: Timeout) -> TimeoutCert | View | None:
        """A verified timeout for the current view or later: the TC it completes, or the view to
        join (f+1 timeouts: at least one honest replica gave up on it), or None."""
        count, tc = self._timeouts.add(timeout)
        if tc is not None:
            return tc
        if self._timeouts.joins(count) and timeout.view > self._safety.state.highest_timeout_view:
            return timeout.view
        return None

    def local_timeout(self, view: View, high_qc: QuorumCert, out: list[Action]) -> TimeoutCert | None:
        """Sign and broadcast our timeout for `view`; the TC it completes, if any."""
        timeout = self._safety.timeout(view, high_qc)
        if isinstance(timeout, Refused):
            out.append(Refusal.of(Subject.OWN_TIMEOUT, timeout, view, self._config.me))
            return None
        out.append(Broadcast(timeout))
        return self._timeouts.add(timeout)[1]

    def record_tc(self, tc: TimeoutCert) -> None:
        """Keep `tc` if it is the highest seen, journaled before it justifies anything."""
        if self.last_tc is None or tc.view > self.last_tc.view:
            self.last_tc = tc
            self._journal.save_tc(tc)

    def start_view(self, high_qc: QuorumCert) -> View:
        """The view a (re)started replica enters: past every view it certified, timed out in or
        voted in (durable state), so that it never signs twice for one view."""
        state = self._safety.state
        tc_view = self.last_tc.view + 1 if self.last_tc is not None else 0
        return View(max(high_qc.view + 1, tc_view, state.last_voted_view, state.highest_timeout_view))

    def send_sync_info(
        self,
        peer: ValidatorIndex,
        peer_view: View,
        view: View,
        high_qc: QuorumCert,
        now: float,
        out: list[Action],
    ) -> None:
        """Send our certificates to a peer whose message shows it in an older view than ours, at
        most once per view of ours and base timeout (its copy may have been lost)."""
        if peer_view >= view:
            return
        last = self._synced_peer.get(peer)
        if last is not None and last[0] == view and now - last[1] < self._config.base_timeout_s:
            return
        self._synced_peer[peer] = (view, now)
        out.append(Send(peer, SyncInfo(high_qc, self.last_tc)))

    def timeout_authors(self, view: View) -> frozenset[ValidatorIndex]:
        return self._timeouts.authors(view)

    def prune_below(self, view: View) -> None:
        self._timeouts.prune_below(view)

    def views_held(self) -> int:
        return self._timeouts.views_held()
