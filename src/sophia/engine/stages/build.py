"""build-cache: build the release artifact, reusing the cached one when the tree's content is unchanged.

For images the stage's details carry each image by digest, its tags, the SBOM and every scan's result; a scanner
that could not run shows as ``not scanned: reason``, never as clean.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sophia.engine.context import RunContext
from sophia.engine.stages.base import StageResult, passed


def scan_summary(scans: tuple[Mapping[str, Any], ...]) -> str:
    """One phrase per scanner: ``pip-audit clean``, ``trivy 3 findings``, ``grype not scanned: reason``."""
    parts = []
    for scan in scans:
        status = scan.get("status")
        if status == "clean":
            parts.append(f"{scan['tool']} clean")
        elif status == "findings":
            parts.append(f"{scan['tool']} {scan.get('findings', '?')} findings")
        else:
            parts.append(f"{scan['tool']} not scanned: {scan.get('reason', 'unknown reason')}")
    return "; ".join(parts)


class BuildCache:
    name = "build-cache"

    async def run(self, ctx: RunContext) -> StageResult:
        artifact = await ctx.ports.builder.build(ctx.record.version)
        ctx.record.artifact = artifact.to_dict()
        how = "cache hit" if artifact.cache_hit else f"built in {artifact.build_seconds:.1f}s"
        summary = (
            f"{artifact.kind.value} {artifact.name} ({how}; content {artifact.content_hash[:12]}, "
            f"git {artifact.git_sha[:10]})"
        )
        if artifact.scans:
            summary += f"; scans: {scan_summary(artifact.scans)}"
        if artifact.images and artifact.sbom is None and artifact.scans:
            summary += "; no SBOM"
        return passed(
            summary,
            cache_hit=artifact.cache_hit,
            content_hash=artifact.content_hash,
            git_sha=artifact.git_sha,
            kind=artifact.kind.value,
            artifact=artifact.reference,
            images=dict(artifact.images),
            tags={k: list(v) for k, v in artifact.tags.items()},
            sbom=artifact.sbom,
            scans=[dict(s) for s in artifact.scans],
        )
