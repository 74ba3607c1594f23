"""Positions for a small directed graph drawn as SVG: nodes in columns by longest path.

Lineage graphs and pipeline DAGs are a few dozen nodes; a layered layout computed here keeps
the pages free of a graph-drawing library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

COLUMN_WIDTH = 230
ROW_HEIGHT = 64
NODE_WIDTH = 190
NODE_HEIGHT = 44
MARGIN = 16


@dataclass(frozen=True)
class PlacedNode:
    id: str
    label: str
    sublabel: str
    css: str
    href: str | None
    x: int
    y: int


@dataclass(frozen=True)
class PlacedEdge:
    path: str
    label: str


@dataclass(frozen=True)
class Layout:
    nodes: list[PlacedNode]
    edges: list[PlacedEdge]
    width: int
    height: int


@dataclass(frozen=True)
class GraphNode:
    id: str
    label: str
    sublabel: str = ""
    css: str = ""
    href: str | None = None


def layout(nodes: Sequence[GraphNode], edges: Sequence[tuple[str, str, str]]) -> Layout:
    """``edges`` are (source, target, label); sources end up left of their targets."""
    ids = [n.id for n in nodes]
    known = set(ids)
    incoming: dict[str, list[str]] = {i: [] for i in ids}
    for src, dst, _ in edges:
        if src in known and dst in known and src != dst:
            incoming[dst].append(src)
    depth: dict[str, int] = {}

    def depth_of(node: str, seen: frozenset[str]) -> int:
        if node in depth:
            return depth[node]
        parents = [p for p in incoming[node] if p not in seen]
        d = 0 if not parents else 1 + max(depth_of(p, seen | {node}) for p in parents)
        depth[node] = d
        return d

    for i in ids:
        depth_of(i, frozenset())
    rows: dict[int, int] = {}
    placed: dict[str, PlacedNode] = {}
    for n in nodes:
        col = depth[n.id]
        row = rows.get(col, 0)
        rows[col] = row + 1
        placed[n.id] = PlacedNode(
            n.id,
            n.label,
            n.sublabel,
            n.css,
            n.href,
            MARGIN + col * COLUMN_WIDTH,
            MARGIN + row * ROW_HEIGHT,
        )
    out_edges = []
    for src, dst, label in edges:
        a, b = placed.get(src), placed.get(dst)
        if a is None or b is None:
            continue
        x1, y1 = a.x + NODE_WIDTH, a.y + NODE_HEIGHT // 2
        x2, y2 = b.x, b.y + NODE_HEIGHT // 2
        mid = (x1 + x2) // 2
        out_edges.append(PlacedEdge(f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}", label))
    width = MARGIN * 2 + (max(depth.values(), default=0) + 1) * COLUMN_WIDTH
    height = MARGIN * 2 + max(rows.values(), default=1) * ROW_HEIGHT
    return Layout(list(placed.values()), out_edges, width, height)
