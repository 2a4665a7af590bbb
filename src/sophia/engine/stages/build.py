"""build-cache: build the release artifact, reusing the cached one when the tree's content is unchanged."""

from __future__ import annotations

from sophia.engine.context import RunContext
from sophia.engine.stages.base import StageResult, passed


class BuildCache:
    name = "build-cache"

    async def run(self, ctx: RunContext) -> StageResult:
        artifact = await ctx.ports.builder.build(ctx.record.version)
        ctx.record.artifact = artifact.to_dict()
        how = "cache hit" if artifact.cache_hit else f"built in {artifact.build_seconds:.1f}s"
        return passed(
            f"{artifact.kind.value} {artifact.name} ({how}; content {artifact.content_hash[:12]}, "
            f"git {artifact.git_sha[:10]})",
            cache_hit=artifact.cache_hit,
            content_hash=artifact.content_hash,
            git_sha=artifact.git_sha,
            kind=artifact.kind.value,
            artifact=artifact.reference,
            images=dict(artifact.images),
        )
