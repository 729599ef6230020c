"""Generated documents of hamon_disk: its metadata, its man page, the KAMN catalog.

    tools/gen-ocf-docs            write metadata/hamon_disk.xml, man/ocf_hamon_hamon_disk.7,
                                  docs/messages.md
    tools/gen-ocf-docs --check    exit 1 naming the stale file(s)

Why generated: Pacemaker and pcs read the agent's own ``meta-data`` output, so the checked
in XML and the man page must be exactly that, never a hand-edited cousin; the message
catalog is :data:`hamon.lib.messages.CATALOG`, and its documentation must not drift from
the texts the agents really log.

The man page follows the shape of resource-agents' own ``ocf_heartbeat_*(7)`` pages
(NAME, SYNOPSIS, DESCRIPTION, SUPPORTED PARAMETERS, SUPPORTED ACTIONS, an example)
without their DocBook tool chain (Debian ships no ``ra2refentry.xsl``): it is rendered
here from the metadata XML, plus a MESSAGES section from the catalog. It carries no date,
so regenerating an unchanged agent gives an identical file.
"""
from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from hamon.lib.messages import CATALOG, Severity, with_manual_placeholders

TOP = Path(__file__).resolve().parent.parent
PROVIDER = "hamon"
AGENT = "hamon_disk"
MAN_NAME = f"ocf_{PROVIDER}_{AGENT}"
FILES = {
    "metadata": Path("metadata") / f"{AGENT}.xml",
    "man": Path("man") / f"{MAN_NAME}.7",
    "messages": Path("docs") / "messages.md",
}


def metadata() -> str:
    """The metadata XML exactly as ``hamon_disk meta-data`` prints it."""
    from hamon.ocf import metadata as agent_metadata

    return agent_metadata()


# -- man page -------------------------------------------------------------------------------
def _roff(text: str) -> str:
    """Plain text -> troff: backslashes, hyphens and line-leading dots made literal."""
    out = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in out.split("\n"):
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def _paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in text.strip().split("\n\n") if p.strip()]


ACTION_TEXT = {
    "start": "Registers the key through every path, reserves, forcibly obtains the disk "
             "from another holder.",
    "stop": "Releases the reservation and removes the key; HA Monitor's rules when the "
            "disk fails meanwhile.",
    "monitor": "Checks the reservation and every path; degraded when some paths failed.",
    "validate-all": "Checks the parameters and that the device nodes exist.",
    "meta-data": "Prints this agent's metadata.",
}


def man_page(xml_text: str) -> str:
    """ocf_hamon_hamon_disk(7) from the metadata XML (and the message catalog)."""
    root = ET.fromstring(xml_text.encode())
    short = " ".join((root.findtext("shortdesc") or "").split())
    actions = [a.get("name", "") for a in root.iter("action")]
    out = [
        f'.TH "{MAN_NAME.upper()}" "7" "" "hamon {root.get("version", "")}" '
        '"OCF resource agents"',
        ".nh", ".ad l",
        '.SH "NAME"', f"{_roff(MAN_NAME)} \\- {_roff(short)}",
        '.SH "SYNOPSIS"', f"\\fB{_roff(AGENT)}\\fR [{' | '.join(_roff(a) for a in actions)}]",
        '.SH "DESCRIPTION"',
    ]
    for p in _paragraphs(root.findtext("longdesc") or ""):
        out += [".PP", _roff(p)]
    out.append('.SH "SUPPORTED PARAMETERS"')
    for prm in root.iter("parameter"):
        content = prm.find("content")
        ctype = content.get("type", "string") if content is not None else "string"
        default = content.get("default") if content is not None else None
        traits = ["unique"] if prm.get("unique") == "1" else []
        traits.append("required" if prm.get("required") == "1" else "optional")
        traits.append(ctype)
        if default is not None:
            traits.append(f'default "{default}"')
        out += [".PP", f"\\fB{_roff(prm.get('name', ''))}\\fR", ".RS 4",
                _roff(" ".join((prm.findtext("longdesc") or "").split())), ".sp",
                f"({_roff(', '.join(traits))})", ".RE"]
    out += ['.SH "SUPPORTED ACTIONS"', ".PP",
            "This resource agent supports the following actions (operations):"]
    for a in root.iter("action"):
        name = a.get("name", "")
        text = ACTION_TEXT.get(name, "")
        text += f" Suggested minimum timeout: {a.get('timeout')}."
        if a.get("interval"):
            text += f" Suggested interval: {a.get('interval')}."
        out += [".PP", f"\\fB{_roff(name)}\\fR", ".RS 4", _roff(text.strip()), ".RE"]
    out += ['.SH "EXAMPLE PCS"', ".PP",
            "A multipath disk held for the service that uses it, started before the file "
            "system:", ".sp", ".nf", ".RS 4",
            _roff("pcs resource create shared-disk ocf:hamon:hamon_disk "
                  "dmmp_device=/dev/mapper/mpatha \\"), _roff("    --group service"),
            _roff("pcs resource create data ocf:heartbeat:Filesystem "
                  "device=/dev/mapper/mpatha \\"),
            _roff("    directory=/srv/data fstype=xfs --group service"),
            _roff("crm_mon -1 -A    # hamon-paths-mpatha = 2/2"), ".RE", ".fi",
            '.SH "MESSAGES"', ".PP",
            "Every message goes to syslog (tag hamon) and to standard error, which "
            "pacemaker\\-execd copies into the cluster log. KAMN IDs are HA Monitor's own "
            "(its meanings and fields; KAMN725\\-W and KAMN727\\-I word for word); HAMN "
            "IDs are hamon's own, messages HA Monitor does not have."]
    for m in CATALOG.values():
        out += [".PP", f"\\fB{_roff(m.full_id)}\\fR", ".RS 4", _roff(m.template), ".sp",
                _roff(m.explanation), ".RE"]
    out += ['.SH "FILES"', ".PP", "/var/lib/hamon/journal", ".RS 4",
            "The durable journal (one checksummed JSON line per entry), read by "
            "hamon recover.", ".RE", ".PP", "/run/hamon/RESOURCE.json", ".RS 4",
            "Path states between monitors, and whether a start began on this node.", ".RE",
            '.SH "SEE ALSO"', ".PP",
            "\\fBhamon\\fR(8), \\fBfence_hamon_scsi\\fR(8), \\fBpcs\\fR(8), "
            "\\fBcrm_mon\\fR(8), \\fBsg_persist\\fR(8); docs/hamon_disk.md and "
            "docs/messages.md in the hamon sources."]
    return "\n".join(out) + "\n"


# -- message catalog --------------------------------------------------------------------------
_SEVERITY = {Severity.INFO: "information", Severity.WARNING: "warning",
             Severity.ERROR: "error"}


def messages_md() -> str:
    """docs/messages.md from :data:`hamon.lib.messages.CATALOG`."""
    out = [
        "# KAMN and HAMN messages",
        "",
        "<!-- Generated by tools/gen-ocf-docs from hamon/lib/messages.py; do not edit. -->",
        "",
        "Every message hamon logs has an ID, a severity letter and fixed fields. It goes "
        "to syslog (identifier `hamon`, facility daemon: `journalctl -t hamon`) with the "
        "ID at the start of the text, and to standard error, which `pacemaker-execd` "
        "copies into the cluster log, so it is seen on a node without a syslog daemon "
        "too.",
        "",
        "## The rule",
        "",
        "* **KAMN** IDs are Hitachi HA Monitor's own, used only for a message HA Monitor "
        "defines, with its meaning, severity, fields and details codes, so HA Monitor "
        "runbooks and log filters keep working. Where HA Monitor's manual publishes the "
        "text, hamon's is the manual's word for word (checked by a unit test: hamon's "
        "template with the manual's placeholders `aa....aa`, `bb....bb`, ... in field "
        "order equals the manual's text). Where it does not, hamon keeps the ID and the "
        "meaning and writes the sentence in HA Monitor's style, `... (name: value, ...)`.",
        "* **HAMN** IDs are hamon's own: messages HA Monitor does not have (the "
        "reservation acquired, preempted, released, cancelled; the OS termination). They "
        "were KAMN950 to KAMN957 before: a KAMN number of hamon's choosing could be one "
        "HA Monitor uses for something else. The numbers stayed, so a log filter "
        "`KAMN95` becomes `HAMN95`.",
        "",
        "## HA Monitor's messages, side by side",
        "",
        "| ID | HA Monitor's manual | hamon |",
        "|----|---------------------|-------|",
    ]
    for m in CATALOG.values():
        if m.hamon_own:
            continue
        ours = with_manual_placeholders(m).replace("|", "\\|")
        manual = (m.manual.replace("|", "\\|") if m.manual else
                  "*(text not public; same ID, severity and meaning)*")
        same = " (identical)" if m.manual == with_manual_placeholders(m) else ""
        out.append(f"| {m.full_id} | {manual} | {ours}{same} |")
    out += [
        "",
        "KAMN725-W's host address is the node and, in brackets, the reservation key it "
        "registered (for ALREADY-RESERVATION: the holder's node, `-` when no node of the "
        "cluster derives the key, and the holder's key), so HA Monitor's §7.5.12 check "
        "compares it with `sg_persist --in --no-inquiry --read-reservation DEV`. The "
        "server is the `alias` of the hamon_disk resource or of the fence_hamon_scsi "
        "device, never the fenced node.",
        "",
        "## Every message",
        "",
        "| ID | severity | text |",
        "|----|----------|------|",
    ]
    for m in CATALOG.values():
        cell = m.template.replace("|", "\\|")
        out.append(f"| {m.full_id} | {_SEVERITY[m.severity]} | {cell} |")
    out.append("")
    for m in CATALOG.values():
        out += [f"## {m.full_id}", "", f"`{m.template}`", "", m.explanation, ""]
    out += [
        "## Details codes",
        "",
        "KAMN725-W `details code`: `OPEN` (the device could not be opened or does not "
        "exist; KAMN601-W precedes it), `IOCTL` (the device does not support SCSI "
        "reservation; KAMN601-W precedes it), `ALREADY-RESERVATION` (another system "
        "holds the reservation), `IO-ERR` (an I/O error).",
        "",
        "KAMN727-I `details code`: `STANDBY_CHECK` (the standby's periodic path check), "
        "`ONLINE_CHECK` (the active server's periodic reservation check), "
        "`ONLINE_CHECK(NO_KEY)` (the path answers but lost its key; it is registered "
        "again).",
        "",
        "Device names: the operand as configured (`/dev/sdb`, `/dev/mapper/mpatha`, an "
        "`iscsi://` URL); for a path of a DMMP disk the map name followed by the path, "
        "`mpatha(/dev/sdc)`, as HA Monitor prints it.",
        "",
    ]
    return "\n".join(out)


# -- command ----------------------------------------------------------------------------------
def outputs() -> dict[Path, str]:
    xml = metadata()
    return {FILES["metadata"]: xml, FILES["man"]: man_page(xml),
            FILES["messages"]: messages_md()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gen-ocf-docs", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="compare with the checked-in files instead of writing them")
    args = ap.parse_args(argv)
    stale = []
    for rel, text in outputs().items():
        path = TOP / rel
        current = path.read_text() if path.exists() else None
        if args.check:
            if current != text:
                stale.append(str(rel))
        elif current != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {rel}")
    if stale:
        print("gen-ocf-docs: out of date (run tools/gen-ocf-docs): " + ", ".join(stale),
              file=sys.stderr)
        return 1
    return 0
