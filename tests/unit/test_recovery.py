"""The recovery procedure as data: every branch of the seed's four steps, from plain data.

Branches: single path / DMMP / HDLM / userspace iSCSI; no journal; a failure during a
normal, planned and abnormal termination; a torn journal (before and after the entry);
other phases; a later cancel; the holder now.
"""
from __future__ import annotations

from typing import Any

import pytest

from hamon.lib.journal import Journal
from hamon.lib.recovery.kernel_log import kernel_messages
from hamon.lib.recovery.observed import DiskNow, PathNow, ReservationNow, describe_key
from hamon.lib.recovery.plan import build, termination_of
from hamon.lib.recovery.selection import Selection, operands_of, select, summarize
from hamon.lib.recovery.steps import Applies
from tests.unit.simdisk import K1, K2

MPATH = "/dev/mapper/mpatha"


def failure(termination: str = "normal", *, kind: str = "dmmp", phase: str = "terminating",
            verdict: str = "terminate-os", disk: str = MPATH, paths: tuple[str, ...] = (
                "/dev/sdb", "/dev/sdc"), failed: int = 2, node: str = "node1"
            ) -> dict[str, Any]:
    name = disk.rsplit("/", 1)[-1]
    return {"phase": phase, "verdict": verdict, "termination": termination, "alias": "svc",
            "node": node, "resource": "shared-disk", "os_action": "reboot",
            "disks": [{"disk": disk, "kind": kind,
                       "wwid": "3600a" if disk == MPATH else None, "paths_total": len(paths),
                       "all_failed": failed == len(paths),
                       "failed": [{"label": f"{name}({p})" if kind == "dmmp" else p,
                                   "path": p, "reason": "SG_IO: DID_NO_CONNECT",
                                   "code": "IO-ERR"} for p in paths[:failed]]}]}


def journal_with(tmp_path, *entries: tuple[str, dict[str, Any]]) -> Journal:
    j = Journal(str(tmp_path / "journal"))
    for kind, data in entries:
        j.append(kind, **data)
    return j


def sel_for(tmp_path, *entries, device=None, wwid=None) -> Selection:
    return select(journal_with(tmp_path, *entries).records(), device, wwid)


def tear_last(j: Journal) -> None:
    """The machine stopped half way through the last entry."""
    with open(j.path, "rb") as f:
        data = f.read()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    with open(j.path, "wb") as f:
        f.write(data[: start + (len(data) - start) // 2])


def dmmp_now(*paths: tuple[str, str, bool], holder: int | None = K1,
             keys: tuple[int, ...] = (K1, K1)) -> DiskNow:
    """paths: (name, hamon state, multipathd has it failed)."""
    ps = tuple(PathNow(n, st, "" if st == "up" else "connection refused",
                       "running, dm failed, checker faulty" if bad else "running, dm active",
                       bad) for n, st, bad in paths)
    res = ReservationNow(holder is not None, holder, "WE-RO" if holder else None, keys)
    return DiskNow(MPATH, "dmmp", "3600a", ps, None, res)


def scsi_now(state: str = "up", holder: int | None = K1) -> DiskNow:
    res = ReservationNow(holder is not None, holder, "WE-RO" if holder else None,
                         (K1,) if holder == K1 else ())
    return DiskNow("/dev/sdb", "scsi", "3600b",
                   (PathNow("/dev/sdb", state, "" if state == "up" else "gone", "running",
                            False),), None, res)


# -- selection and trust -------------------------------------------------------------------
def test_no_journal_selects_nothing(tmp_path):
    sel = select(Journal(str(tmp_path / "none")).records())
    assert sel.entry is None and sel.torn == ()
    assert termination_of(sel)[0] == "unknown"


def test_selects_newest_failure_for_the_device(tmp_path):
    sel = sel_for(tmp_path, ("failure", failure("planned")),
                  ("failure", failure("abnormal", disk="/dev/mapper/mpathb")),
                  ("release", {"disks": [{"disk": MPATH}]}),
                  device=MPATH)
    assert sel.entry["termination"] == "planned" and sel.line == 1
    assert [e["kind"] for e in sel.later] == ["release"]
    # by LUN identity, when the administrator names the map differently (/dev/dm-0)
    assert select(journal_with(tmp_path / "b", ("failure", failure())).records(),
                           "/dev/dm-0", "3600a").entry is not None
    # by a failed path's name
    assert sel_for(tmp_path / "c", ("failure", failure()), device="/dev/sdc").entry


def test_selects_by_an_operand_list_when_nothing_answers(tmp_path):
    """The agents take ``url-A,url-B`` (one LUN, two portals). With every path down the
    LUN identity cannot be read, so the operand list as the administrator typed it must
    still find the failure, and a list naming other disks must not."""
    a, b = "iscsi://127.0.0.1:3260/iqn.t/1", "iscsi://127.0.0.2:3260/iqn.t/1"
    entry = failure("normal", kind="iscsi", disk=a, paths=(a, b))
    assert sel_for(tmp_path / "a", ("failure", entry), device=f"{a},{b}").entry
    assert sel_for(tmp_path / "b", ("failure", entry), device=f"{b} {a}").entry
    assert sel_for(tmp_path / "c", ("failure", entry), device=b).entry
    assert sel_for(tmp_path / "d", ("failure", entry),
                   device="iscsi://127.0.0.1:3260/iqn.t/2").entry is None


def test_a_later_probe_does_not_hide_the_os_termination(tmp_path):
    """node1 was terminated (normal); back up, Pacemaker's probe (standby) and a monitor
    run by hand journal the paths that still fail. Step 4 still follows the termination."""
    sel = sel_for(tmp_path, ("failure", failure("normal")),
                  ("failure", failure("unknown", phase="standby", verdict="continue",
                                      failed=1)),
                  ("failure", failure("unknown", phase="running", verdict="degraded",
                                      failed=1)))
    assert sel.line == 1 and len(sel.later) == 2
    plan = build(sel, [dmmp_now(("/dev/sdb", "failed", True),
                                         ("/dev/sdc", "up", False))])
    assert plan.termination == "normal"
    assert plan.step(4).applies is Applies.YES
    later = [ln for ln in plan.step(1).details if ln.startswith("  later: ")]
    assert len(later) == 2 and "while standby" in later[0]
    # without any OS termination on record, the newest failure is the one
    sel = sel_for(tmp_path / "b", ("failure", failure("unknown", phase="switchover",
                                                      verdict="fail")),
                  ("failure", failure("unknown", phase="running", verdict="degraded")))
    assert sel.line == 2 and sel.entry["phase"] == "running"


def test_torn_entry_after_the_failure_makes_the_kind_unknown(tmp_path):
    j = journal_with(tmp_path, ("failure", failure("planned")), ("failure", failure("normal")))
    tear_last(j)
    sel = select(j.records())
    assert sel.entry["termination"] == "planned"      # the intact one is used...
    assert [r.line for r in sel.newer_torn] == [2]
    kind, why = termination_of(sel)
    assert kind == "unknown" and "line(s) 2" in why   # ...but its kind is not relied on
    plan = build(sel, [dmmp_now(("/dev/sdb", "up", False), ("/dev/sdc", "up", False))])
    assert plan.termination == "unknown"
    assert any("torn" in w for w in plan.warnings)
    assert plan.step(4).applies is Applies.UNKNOWN
    assert "cannot tell" in plan.step(4).why
    # the command is offered, conditionally: the why says when it applies
    assert plan.step(4).suggested == [f"hamon reservation cancel {MPATH}"]


def test_torn_entry_before_the_failure_is_reported_but_the_entry_trusted(tmp_path):
    j = journal_with(tmp_path, ("failure", failure("abnormal")))
    tear_last(j)
    j.append("failure", **failure("normal"))
    sel = select(j.records())
    assert [r.valid for r in j.records()] == [False, True]
    assert sel.entry["termination"] == "normal" and sel.newer_torn == ()
    plan = build(sel, [dmmp_now(("/dev/sdb", "up", False), ("/dev/sdc", "up", False))])
    assert plan.termination == "normal"
    assert plan.warnings and "not trusted" in plan.warnings[0]
    assert plan.step(4).applies is Applies.YES


def test_only_torn_entries_means_no_entry_and_unknown(tmp_path):
    j = journal_with(tmp_path, ("failure", failure("normal")))
    tear_last(j)
    sel = select(j.records())
    assert sel.entry is None and len(sel.torn) == 1
    kind, why = termination_of(sel)
    assert kind == "unknown" and "torn" in why


# -- step 1: the cause -----------------------------------------------------------------------
def test_step1_reconstructs_the_messages_and_shows_kernel_lines_and_paths(tmp_path):
    sel = sel_for(tmp_path, ("failure", failure()))
    now = dmmp_now(("/dev/sdb", "up", True), ("/dev/sdc", "failed", True))
    kernel = {"/dev/sdc": ["sd 2:0:0:1: [sdc] tag#0 FAILED Result: DID_NO_CONNECT"]}
    s1 = build(sel, [now], kernel=kernel).step(1)
    text = "\n".join(s1.details)
    assert s1.applies is Applies.YES
    assert "KAMN725-W" in text and "mpatha(/dev/sdb)" in text and "IO-ERR" in text
    assert "KAMN726-E" in text and "failed paths: /dev/sdb,/dev/sdc" in text
    assert "DID_NO_CONNECT" in text
    assert "/dev/sdb: none found" in text            # asked, nothing found: said so
    assert "/dev/sdc failed: connection refused" in text
    assert "KAMN72" in text and "journalctl -t hamon" in text


def test_step1_without_journal_says_where_to_look():
    plan = build(Selection(None, None), [scsi_now()])
    assert "No failure is recorded" in plan.step(1).details[0]


def test_step1_iscsi_paths_have_no_kernel_device(tmp_path):
    url = "iscsi://127.0.0.1:3260/iqn.2026-11.org.hamon:tgt/1"
    sel = sel_for(tmp_path, ("failure", failure(kind="iscsi", disk=url, paths=(url,))))
    now = DiskNow(url, "iscsi", None, (PathNow(url, "failed", "refused"),))
    assert "no kernel device" in "\n".join(build(sel, [now]).step(1).details)


# -- step 2: fix it, no failback yet ---------------------------------------------------------
def test_step2_still_failed_and_offline_hint(tmp_path):
    sel = sel_for(tmp_path, ("failure", failure()))
    now = DiskNow(MPATH, "dmmp", None, (
        PathNow("/dev/sdb", "up", "", "running, dm active"),
        PathNow("/dev/sdc", "failed", "SG_IO: no device", "offline, dm failed", True)))
    s2 = build(sel, [now]).step(2)
    assert s2.applies is Applies.YES
    text = "\n".join(s2.details)
    assert "echo running > /sys/block/sdc/device/state" in text
    assert "do not fail the path back yet" in text


def test_step2_done_when_every_path_answers(tmp_path):
    sel = sel_for(tmp_path, ("failure", failure()))
    s2 = build(sel, [dmmp_now(("/dev/sdb", "up", True),
                                       ("/dev/sdc", "up", True))]).step(2)
    assert s2.applies is Applies.DONE


def test_step2_unresolvable_disk_is_still_to_fix(tmp_path):
    sel = sel_for(tmp_path, ("failure", failure()))
    now = DiskNow(MPATH, "dmmp", error="/dev/mapper/mpatha: no such device")
    plan = build(sel, [now])
    assert plan.step(2).applies is Applies.YES
    assert plan.step(3).applies is Applies.UNKNOWN
    assert "multipathd reinstate path" in "\n".join(plan.step(3).details)


# -- step 3: failback, by multipath software -------------------------------------------------
def test_step3_single_path_not_applicable(tmp_path):
    sel = sel_for(tmp_path, ("failure", failure(kind="scsi", disk="/dev/sdb",
                                                paths=("/dev/sdb",))))
    s3 = build(sel, [scsi_now()]).step(3)
    assert s3.applies is Applies.NO and s3.commands == []
    assert "single path" in s3.details[0]


def test_step3_userspace_iscsi_has_no_multipath_software(tmp_path):
    urls = [f"iscsi://127.0.0.{i}:3260/iqn.2026-11.org.hamon:tgt/1" for i in (1, 2)]
    sel = sel_for(tmp_path, ("failure", failure(kind="iscsi", disk=urls[0],
                                                paths=tuple(urls))))
    now = DiskNow(urls[0], "iscsi", "3600c", tuple(PathNow(u, "up") for u in urls))
    s3 = build(sel, [now]).step(3)
    assert s3.applies is Applies.NO and "VMware ESXi" in s3.details[0]


def test_step3_dmmp_recovered_path_is_offered_for_failback(tmp_path):
    sel = sel_for(tmp_path, ("failure", failure()))
    plan = build(sel, [dmmp_now(("/dev/sdb", "up", False),
                                         ("/dev/sdc", "up", True))])
    s3 = plan.step(3)
    assert s3.applies is Applies.YES
    assert [c.shell for c in s3.commands] == ["multipathd reinstate path sdc"]
    assert plan.failback_commands == s3.commands


def test_step3_dmmp_path_still_dead_is_not_offered(tmp_path):
    sel = sel_for(tmp_path, ("failure", failure()))
    s3 = build(sel, [dmmp_now(("/dev/sdb", "up", False),
                                       ("/dev/sdc", "failed", True))]).step(3)
    assert s3.applies is Applies.YES and s3.commands == []
    assert "does not answer yet" in "\n".join(s3.details)


def test_step3_dmmp_all_active_is_done(tmp_path):
    sel = sel_for(tmp_path, ("failure", failure()))
    s3 = build(sel, [dmmp_now(("/dev/sdb", "up", False),
                                       ("/dev/sdc", "up", False))]).step(3)
    assert s3.applies is Applies.DONE and s3.commands == []


def test_step3_hdlm_uses_dlnkmgr_online_with_the_path_id(tmp_path):
    sel = sel_for(tmp_path, ("failure", failure(kind="hdlm", disk="/dev/sddlmaa")))
    now = DiskNow("/dev/sddlmaa", "hdlm", None, (
        PathNow("/dev/sdb", "up", "", "HDLM Online (PathID 000000)", path_id="000000"),
        PathNow("/dev/sdc", "up", "", "HDLM Offline(E) (PathID 000001)", True, "000001")))
    plan = build(sel, [now], dlnkmgr="/opt/DynamicLinkManager/bin/dlnkmgr")
    assert [c.shell for c in plan.step(3).commands] == [
        "/opt/DynamicLinkManager/bin/dlnkmgr online -pathid 000001 -s"]


def test_step3_hdlm_without_path_id_says_how_to_find_it(tmp_path):
    sel = sel_for(tmp_path, ("failure", failure(kind="hdlm", disk="/dev/sddlmaa")))
    now = DiskNow("/dev/sddlmaa", "hdlm", None, (
        PathNow("/dev/sdc", "up", "", "HDLM Offline(C)", True),))
    s3 = build(sel, [now]).step(3)
    assert s3.applies is Applies.UNKNOWN and s3.commands == []
    assert "dlnkmgr view -path" in "\n".join(s3.details)


# -- step 4: cancel only after a normal termination -----------------------------------------
def test_step4_normal_termination_cancel_applies(tmp_path):
    sel = sel_for(tmp_path, ("failure", failure("normal")))
    s4 = build(sel, [dmmp_now(("/dev/sdb", "up", False), ("/dev/sdc", "up", False))],
                        nodes=["node1", "node2"]).step(4)
    assert s4.applies is Applies.YES
    assert s4.suggested == [f"hamon reservation cancel {MPATH}"]
    assert f"held now by 0x{K1:x} (node1) (WE-RO)" in s4.details[0]


def test_step4_normal_termination_but_nothing_held_is_done(tmp_path):
    sel = sel_for(tmp_path, ("failure", failure("normal")))
    s4 = build(sel, [dmmp_now(("/dev/sdb", "up", False), ("/dev/sdc", "up", False),
                                       holder=None, keys=())]).step(4)
    assert s4.applies is Applies.DONE and s4.suggested == []
    assert "no key registered" in s4.details[0]


def test_step4_normal_termination_held_by_another_node_is_done_never_cancelled(tmp_path):
    """node1 failed in a normal termination; node2's key holds the disk now (the service
    was started again): cancelling it would pull the disk from under a live node."""
    sel = sel_for(tmp_path, ("failure", failure("normal")))
    s4 = build(sel, [dmmp_now(("/dev/sdb", "up", False), ("/dev/sdc", "up", False),
                                       holder=K2, keys=(K2,))], nodes=["node2"]).step(4)
    assert s4.applies is Applies.DONE and s4.suggested == []
    assert "started again" in s4.why
    assert "not to be cancelled" in "\n".join(s4.details)


def test_step4_unknown_kind_held_by_another_node_is_nothing_to_cancel(tmp_path):
    """The VM cluster's run 11: node2 was frozen and fenced, its journal's last failure
    has an unknown kind, node1 runs the service with its own key: step 4 must not
    suggest cancelling node1's reservation."""
    sel = sel_for(tmp_path, ("failure", failure("unknown", node="node2")))
    s4 = build(sel, [dmmp_now(("/dev/sdb", "up", False), ("/dev/sdc", "up", False),
                              holder=K1, keys=(K1, K1))], nodes=["node1"]).step(4)
    assert s4.applies is Applies.NO and s4.suggested == []
    assert "nothing to cancel" in s4.why
    assert f"held now by 0x{K1:x} (node1)" in s4.details[0]
    # the failed node's own key still there: unknown, the cancel offered conditionally
    s4 = build(sel, [dmmp_now(("/dev/sdb", "up", False), ("/dev/sdc", "up", False),
                              holder=K2, keys=(K2,))]).step(4)
    assert s4.applies is Applies.UNKNOWN and s4.suggested == [f"hamon reservation cancel {MPATH}"]


def test_step4_normal_termination_reservation_unreadable(tmp_path):
    sel = sel_for(tmp_path, ("failure", failure("normal")))
    now = DiskNow(MPATH, "dmmp", None, (PathNow("/dev/sdb", "failed", "gone"),),
                  reservation_error="no path answered")
    s4 = build(sel, [now]).step(4)
    assert s4.applies is Applies.YES
    assert "cannot be read now (no path answered)" in s4.details[0]
    assert "cancel once a path answers again" in s4.details


@pytest.mark.parametrize("kind", ["planned", "abnormal"])
def test_step4_planned_or_abnormal_nothing_to_cancel_and_holder_shown(tmp_path, kind):
    sel = sel_for(tmp_path, ("failure", failure(kind)))
    plan = build(sel, [dmmp_now(("/dev/sdb", "up", False), ("/dev/sdc", "up", False),
                                         holder=K2, keys=(K2, K2))], nodes=["node2"])
    s4 = plan.step(4)
    assert plan.termination == kind
    assert s4.applies is Applies.NO and s4.suggested == []
    assert "standby forcibly obtains" in s4.why
    assert f"held now by 0x{K2:x} (node2)" in s4.details[0]


def test_step4_planned_but_failed_node_still_holds(tmp_path):
    sel = sel_for(tmp_path, ("failure", failure("planned")))
    s4 = build(sel, [dmmp_now(("/dev/sdb", "up", False),
                                       ("/dev/sdc", "up", False))]).step(4)
    assert s4.applies is Applies.NO
    assert "has not taken over yet" in "\n".join(s4.details)
    # the failed node's name comes from the entry, so its key is named without --nodes
    assert "(node1)" in s4.details[0]


def test_step4_abnormal_nobody_holds_yet(tmp_path):
    sel = sel_for(tmp_path, ("failure", failure("abnormal")))
    s4 = build(sel, [dmmp_now(("/dev/sdb", "up", False), ("/dev/sdc", "up", False),
                                       holder=None, keys=())]).step(4)
    assert s4.applies is Applies.NO
    assert "has not started the service yet" in "\n".join(s4.details)


def test_step4_without_journal_is_unknown_and_says_both_cases():
    plan = build(Selection(None, None), [scsi_now()], device="/dev/sdb")
    s4 = plan.step(4)
    assert s4.applies is Applies.UNKNOWN
    assert "normal termination" in s4.why and "standby obtains it" in s4.why
    assert s4.suggested == ["hamon reservation cancel /dev/sdb"]


def test_step4_unknown_kind_in_the_entry(tmp_path):
    sel = sel_for(tmp_path, ("failure", failure("unknown")))
    assert build(sel, [scsi_now()]).step(4).applies is Applies.UNKNOWN


def test_step4_unknown_kind_says_what_pacemaker_saw_and_where_to_look(tmp_path):
    entry = {**failure("unknown"), "termination_reason": "Pacemaker stops the resource "
             "without a disable, move, ban, standby, shutdown, failure or fencing",
             "termination_signals": ["shared-disk target-role=Started"]}
    s4 = build(sel_for(tmp_path, ("failure", entry)), [scsi_now()]).step(4)
    assert s4.applies is Applies.UNKNOWN
    assert "without a disable, move" in s4.why and "target-role=Started" in s4.why
    assert "pacemaker.log" in s4.why and "grep shared-disk" in s4.why
    assert "crm_mon -1 --show-detail" in s4.why


@pytest.mark.parametrize("phase", ["standby", "switchover", "running"])
def test_step4_other_phases_leave_nothing_reserved(tmp_path, phase):
    sel = sel_for(tmp_path, ("failure", failure("unknown", phase=phase, verdict="fail")))
    plan = build(sel, [dmmp_now(("/dev/sdb", "up", False), ("/dev/sdc", "up", True))])
    assert plan.step(4).applies is Applies.NO
    assert f"while {phase}" in plan.step(4).why
    assert plan.step(3).applies is Applies.YES  # steps 1-3 still apply (§7.5.9)


def test_step4_some_paths_failed_termination_completed(tmp_path):
    sel = sel_for(tmp_path, ("failure", failure("normal", verdict="continue", failed=1)))
    s4 = build(sel, [dmmp_now(("/dev/sdb", "failed", True),
                                       ("/dev/sdc", "up", False), holder=None,
                                       keys=())]).step(4)
    assert s4.applies is Applies.NO and "only some paths failed" in s4.why


def test_step4_some_paths_failed_but_the_key_is_still_held_is_not_nothing(tmp_path):
    """Issue 10: a stop whose live path refused PR OUT left the reservation held; recover
    must not say 'nothing was left reserved' while the disk, read now, says otherwise."""
    sel = sel_for(tmp_path, ("failure", failure("normal", verdict="continue", failed=1)))
    s4 = build(sel, [dmmp_now(("/dev/sdb", "failed", True),
                                       ("/dev/sdc", "up", False))]).step(4)
    assert s4.applies is Applies.YES and "normal termination" in s4.why
    assert any("left its key there" in d for d in s4.details)
    assert s4.suggested == [f"hamon reservation cancel {MPATH}"]


def test_step4_done_after_a_later_cancel(tmp_path):
    sel = sel_for(tmp_path, ("failure", failure("normal")),
                  ("cancel", {"node": "node2", "forced": False,
                              "disks": [{"disk": MPATH, "holder": f"0x{K1:x}"}]}))
    s4 = build(sel, [dmmp_now(("/dev/sdb", "up", False), ("/dev/sdc", "up", False),
                                       holder=None, keys=())]).step(4)
    assert s4.applies is Applies.DONE and "cancelled by node2" in s4.why


# -- plan shape ------------------------------------------------------------------------------
def test_plan_is_json_ready(tmp_path):
    import json

    sel = sel_for(tmp_path, ("failure", failure()))
    plan = build(sel, [dmmp_now(("/dev/sdb", "up", True), ("/dev/sdc", "up", True))])
    d = json.loads(json.dumps(plan.as_dict()))
    assert [s["step"] for s in d["steps"]] == [1, 2, 3, 4]
    assert d["disks"][0]["reservation"]["key"] == f"0x{K1:x}"
    assert d["steps"][2]["commands"][0]["command"] == "multipathd reinstate path sdb"


def test_operands_of_an_iscsi_entry_include_the_failed_urls():
    urls = [f"iscsi://127.0.0.{i}:3260/iqn.2026-11.org.hamon:tgt/1" for i in (1, 2)]
    e = failure(kind="iscsi", disk=urls[0], paths=tuple(urls), failed=2)
    assert operands_of(e) == [urls]
    assert operands_of(failure()) == [[MPATH]]
    assert operands_of(failure(), "/dev/mapper/other") == []


def test_describe_key():
    assert describe_key(K1, ["node1"]) == f"0x{K1:x} (node1)"
    assert "not named here" in describe_key(K2, [])
    assert "not a hamon-derived key" in describe_key(0x1234, [])
    assert describe_key(0, []) == "0x0 (all registrants)"
    assert describe_key(None, []) == "-"


def test_summaries():
    assert "failure on node1 while terminating (normal termination): 2/2" in \
        summarize({"kind": "failure", **failure()})
    assert "cancelled by node2 with --force" in summarize(
        {"kind": "cancel", "node": "node2", "forced": True, "disks": [{"holder": "0x1"}]})


# -- kernel messages (bounded, injected runner) --------------------------------------------
def test_kernel_messages_previous_boot_then_dmesg():
    calls = []

    def runner(argv, timeout):
        calls.append(argv)
        if argv[0] == "journalctl":
            return 0, ("2026-11-25T03:11:58+0000 host kernel: sd 2:0:0:1: [sdc] tag#3 "
                       "FAILED Result: hostbyte=DID_NO_CONNECT\n"
                       "2026-11-25T03:11:58+0000 host kernel: sd 2:0:0:2: [sdcd] other\n"), ""
        return 0, ("[Tue Nov 25 03:12:01 2026] device-mapper: multipath: 253:0: Failing "
                   "path 8:32.\n[Tue Nov 25 03:12:01 2026] sdc: I/O error\n"), ""

    got = kernel_messages(["/dev/sdc", "iscsi://x/y/1"],
                          "2026-11-25T03:12:00+00:00", runner=runner)
    assert list(got) == ["/dev/sdc"]
    assert len(got["/dev/sdc"]) == 2 and "sdcd" not in "".join(got["/dev/sdc"])
    assert "--since" in calls[0] and calls[1] == ["dmesg", "-T"]


def test_kernel_messages_tools_missing_is_empty():
    assert kernel_messages(["/dev/sdc"], None, runner=lambda a, t: (1, "", "")) == {}
    assert kernel_messages(["iscsi://x/y/1"], None) == {}


def test_odd_entries_are_read_without_trusting_their_shape(tmp_path):
    """An entry with the right checksum but an unexpected shape (an older or newer
    writer) must give a plan, not an internal error."""
    sel = sel_for(tmp_path, ("failure", {"phase": "terminating", "verdict": "terminate-os",
                                         "termination": "normal", "node": "node1",
                                         "disks": [{"disk": MPATH, "failed": None,
                                                    "paths_total": "two"},
                                                   "not a disk",
                                                   {"disk": "/dev/sdq",
                                                    "failed": ["x", {"path": "/dev/sdq"}]}]}),
                  ("failure", {"disks": "nonsense"}))
    assert sel.entry is not None and sel.line == 1
    plan = build(sel, [scsi_now()])
    assert "1/? path(s) failed" in plan.step(1).details[0]
    assert operands_of(sel.entry) == [[MPATH], ["/dev/sdq"]]
    assert summarize({"kind": "failure", "disks": 3}).endswith(
        "0/? path(s) failed, verdict ?")
