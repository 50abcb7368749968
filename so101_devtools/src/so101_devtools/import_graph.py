"""Who imports whom in the suite, read with `ast` from the source folders, and the drawing of it.

The rooms are the import packages under `<folder>/src/`; their floors are the table in docs/development.md
("| floor | room | may import |"), which tests/test_layout.py holds the code to. The drawing puts each floor on a
row, the ground floor at the bottom, and draws one arrow per pair of rooms where one imports the other anywhere
(functions too): an arrow that points up or sideways is a broken rule, and would show.

    python -m so101_devtools.import_graph                      # writes docs/images/imports.png, prints the edges
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
FLOOR_ROW = re.compile(r"^\| (\d) \| ([^|]+) \|", re.MULTILINE)


def floors_from_docs(text: str) -> dict[str, int]:
    """docs/development.md's floor table: room -> floor (rows naming no room in backticks are left out)."""
    floors = {}
    for floor, rooms in FLOOR_ROW.findall(text):
        for room in re.findall(r"`([a-z0-9_]+)`", rooms):
            floors[room] = int(floor)
    return floors


def room_files(room: str, repo: Path = REPO) -> list[Path]:
    """Every module of `room` (the package under some `<folder>/src/`)."""
    (src,) = [p for p in repo.glob(f"*/src/{room}") if not p.parents[1].is_symlink()]
    return sorted(src.rglob("*.py"))


def module_name(path: Path) -> str:
    """`<folder>/src/pkg/sub/mod.py` -> `pkg.sub.mod` (`pkg.sub` for an `__init__.py`)."""
    parts = path.with_suffix("").parts
    parts = parts[len(parts) - parts[::-1].index("src") :]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """Every module `path` imports, anywhere in it (functions too), as absolute names: (line, module); for
    `from pkg import name` both `pkg` and `pkg.name` (which may be a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def room_edges(floors: dict[str, int], repo: Path = REPO) -> dict[str, set[str]]:
    """room -> the other rooms it imports."""
    edges = {}
    for room in floors:
        targets = {module.split(".")[0] for path in room_files(room, repo) for _, module in imports(path)}
        edges[room] = {t for t in targets if t in floors and t != room}
    return edges


def draw(floors: dict[str, int], edges: dict[str, set[str]], path: Path) -> None:
    """The rooms as boxes, one row per floor (0 at the bottom), an arrow from each room to each room it imports."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows: dict[int, list[str]] = {}
    for room, floor in sorted(floors.items()):
        rows.setdefault(floor, []).append(room)
    width = max(len(r) for r in rows.values())
    place = {}
    for floor, rooms in rows.items():
        for i, room in enumerate(rooms):
            place[room] = ((i + 0.5) * width / len(rooms), floor * 1.6)
    fig, ax = plt.subplots(figsize=(3.4 * width, 1.3 * (max(rows) + 1)))
    for room, targets in edges.items():
        for target in sorted(targets):
            (x0, y0), (x1, y1) = place[room], place[target]
            arrow = {"arrowstyle": "->", "color": "0.45", "lw": 0.8, "shrinkA": 0, "shrinkB": 0}
            ax.annotate("", xy=(x1, y1 + 0.28), xytext=(x0, y0 - 0.28), arrowprops=arrow)
    for room, (x, y) in place.items():
        ax.text(x, y, room, ha="center", va="center", fontsize=9,
                bbox={"boxstyle": "round,pad=0.4", "fc": "#e8f0fa", "ec": "#4a6d94"})  # fmt: skip
    for floor in rows:
        ax.text(-0.15, floor * 1.6, f"floor {floor}", ha="right", va="center", fontsize=9, color="0.3")
    ax.set_xlim(-0.9, width)
    ax.set_ylim(-0.6, max(rows) * 1.6 + 0.6)
    ax.axis("off")
    ax.set_title("Who imports whom (arrow: imports); every arrow points down", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else REPO / "docs" / "images" / "imports.png"
    floors = floors_from_docs((REPO / "docs" / "development.md").read_text())
    edges = room_edges(floors)
    for room in sorted(floors, key=lambda r: (-floors[r], r)):
        print(f"{floors[room]} {room} -> {', '.join(sorted(edges[room], key=lambda r: (-floors[r], r))) or '-'}")
    draw(floors, edges, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
