"""What is in an image and what is known to be wrong with it: a CycloneDX SBOM and vulnerability scans.

- The SBOM lists the Python distributions installed in the image's virtualenv (``/opt/venv``), read from their
  ``.dist-info`` metadata on the image's own filesystem, as CycloneDX 1.5 JSON with a PyPI package URL each. It
  needs no network. An image only in a registry (buildx) gets pip-audit's CycloneDX SBOM of the requirements.
- pip-audit checks those distributions against the Python Packaging Advisory Database (PyPI's vulnerability API).
- trivy or grype, whichever is installed, scans the whole filesystem (Debian packages too).

Every scanner gives one entry: ``status`` is ``clean`` (scanned, nothing found), ``findings`` (with ``findings`` the
count) or ``not scanned`` with the ``reason`` (the tool is missing, its advisory source was unreachable, ...).
Nothing that was not scanned is ever reported as clean.
"""

from __future__ import annotations

import email.parser
import json
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

from sophia.build.process import ToolError, run_tool

SBOM_NAME = "sbom.cdx.json"


def site_packages(root: Path) -> Path | None:
    found = sorted(root.glob("opt/venv/lib/python3*/site-packages"))
    return found[0] if found else None


def distributions(site: Path) -> list[tuple[str, str]]:
    """(name, version) of every distribution installed in ``site``, sorted by name."""
    result = []
    for meta in site.glob("*.dist-info/METADATA"):
        headers = email.parser.HeaderParser().parsestr(meta.read_text(errors="replace"))
        if headers.get("Name") and headers.get("Version"):
            result.append((str(headers["Name"]), str(headers["Version"])))
    return sorted(set(result), key=lambda d: d[0].lower())


def _purl(name: str, version: str) -> str:
    return f"pkg:pypi/{name.lower().replace('_', '-')}@{version}"


def cyclonedx(reference: str, packages: list[tuple[str, str]]) -> dict[str, Any]:
    """A CycloneDX 1.5 document describing the image ``reference`` and its Python packages."""
    name, _, digest = reference.partition("@")
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, reference)}",
        "version": 1,
        "metadata": {
            "component": {"type": "container", "name": name, "version": digest, "bom-ref": reference},
            "tools": {"components": [{"type": "application", "name": "sophia-release"}]},
        },
        "components": [
            {
                "type": "library",
                "name": pkg,
                "version": version,
                "purl": _purl(pkg, version),
                "bom-ref": _purl(pkg, version),
            }
            for pkg, version in packages
        ],
    }


def not_scanned(tool: str, target: str, reason: str) -> dict[str, Any]:
    return {"tool": tool, "target": target, "status": "not scanned", "reason": reason}


def scanned(tool: str, target: str, findings: int, report: Path) -> dict[str, Any]:
    return {"tool": tool, "target": target, "status": "findings" if findings else "clean", "findings": findings,
            "report": str(report)}  # fmt: skip


def _executable(name: str) -> str | None:
    beside = Path(sys.executable).parent / name  # the venv's own tools first
    return str(beside) if beside.is_file() else shutil.which(name)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def pip_audit(target: str, args: list[str], report: Path, fmt: str = "json") -> dict[str, Any]:
    exe = _executable("pip-audit")
    if exe is None:
        return not_scanned("pip-audit", target, "pip-audit is not installed")
    report.unlink(missing_ok=True)
    try:
        result = run_tool([exe, *args, "--format", fmt, "--output", str(report), "--progress-spinner", "off"],
                          check=False, timeout_s=600)  # fmt: skip
    except ToolError as exc:
        return not_scanned("pip-audit", target, str(exc))
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        return not_scanned("pip-audit", target, f"exited {result.returncode}: {_last_line(result.output)}")
    if fmt == "json":
        findings = sum(len(d.get("vulns") or ()) for d in data.get("dependencies") or ())
    else:
        findings = len(data.get("vulnerabilities") or ())
    return scanned("pip-audit", target, findings, report)


def filesystem_scan(target: str, root: Path | None, report: Path) -> dict[str, Any]:
    """trivy, else grype, on the image's files (or, with no local files, on the image in the registry)."""
    trivy, grype = _executable("trivy"), _executable("grype")
    if trivy is not None:
        argv = [trivy, "rootfs", str(root)] if root else [trivy, "image", target]
        argv += ["--quiet", "--format", "json", "--output", str(report)]
        tool = "trivy"
    elif grype is not None:
        argv = [grype, f"dir:{root}" if root else f"registry:{target}", "-o", "json", "--file", str(report)]
        tool = "grype"
    else:
        return not_scanned("trivy/grype", target, "neither trivy nor grype is installed")
    report.unlink(missing_ok=True)
    try:
        result = run_tool(argv, check=False, timeout_s=900)
    except ToolError as exc:
        return not_scanned(tool, target, str(exc))
    if result.returncode != 0:
        return not_scanned(tool, target, f"exited {result.returncode}: {_last_line(result.output)}")
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError) as exc:
        return not_scanned(tool, target, f"wrote no readable report: {exc}")
    if tool == "trivy":
        findings = sum(len(r.get("Vulnerabilities") or ()) for r in data.get("Results") or ())
    else:
        findings = len(data.get("matches") or ())
    return scanned(tool, target, findings, report)


def scan_image(
    reference: str, root: Path | None, requirements: Path, out: Path
) -> tuple[str | None, tuple[dict[str, Any], ...]]:
    """The SBOM's path (None when none could be made) and one scan entry per scanner."""
    out.mkdir(parents=True, exist_ok=True)
    sbom_path = out / SBOM_NAME
    sbom: str | None = None
    site = site_packages(root) if root else None
    if site is not None:
        sbom_path.write_text(json.dumps(cyclonedx(reference, distributions(site)), indent=2))
        sbom = str(sbom_path)
        python = pip_audit(reference, ["--path", str(site)], out / "pip-audit.json")
    elif root is not None:
        python = not_scanned("pip-audit", reference, "the image has no /opt/venv site-packages")
    else:
        # Only in the registry: audit (and describe) the requirements the image installs, resolved by pip-audit.
        python = pip_audit(f"{requirements.name} of {reference}", ["--requirement", str(requirements)], sbom_path,
                           fmt="cyclonedx-json")  # fmt: skip
        sbom = str(sbom_path) if python["status"] != "not scanned" else None
    return sbom, (python, filesystem_scan(reference, root, out / "image-scan.json"))
