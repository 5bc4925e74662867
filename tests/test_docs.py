"""docs/playbook.md stays true: every `path::name` it cites names a file of the repository that
defines that function, class, constant or test, and every one of the playbook's 103 items has
its row, with a reason wherever it is not built."""

import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "playbook.md"


def test_every_cited_name_exists_where_the_page_says():
    text = PAGE.read_text()
    # Less the page's own example of the notation.
    example = {("tests/file.py", "test_name")}
    cited = set(re.findall(r"`([\w./-]+\.py)::([\w.]+)`", text)) - example
    assert len(cited) > 100
    missing = []
    for path, name in sorted(cited):
        source = REPO / path
        last = name.split(".")[-1]
        defined = re.compile(rf"^\s*(def|class|async def)\s+{last}\b|^\s*{last}\s*[:=]", re.M)
        if not source.exists() or not defined.search(source.read_text()):
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/playbook.md cites names that do not exist: {missing}"


def test_every_item_has_one_row_and_every_gap_its_reason():
    rows = {}
    for line in PAGE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].isdigit():
            rows.setdefault(int(cells[0]), []).append(cells)
    assert sorted(rows) == list(range(1, 104))
    assert all(len(r) == 1 for r in rows.values())
    for number, ((_, _, status, _, _, why),) in rows.items():
        assert status in ("built", "partial", "absent", "advice-only", "not applicable"), number
        if status != "built":
            assert why not in ("", "—", "-"), f"row {number} is {status} without its reason"


def test_the_counts_line_matches_the_rows():
    text = PAGE.read_text()
    counts: dict[str, int] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].isdigit():
            counts[cells[2]] = counts.get(cells[2], 0) + 1
    (line,) = re.findall(r"^\*\*Counts:\*\* (.*) \(103 items\)\.$", text, re.M)
    said = {status: int(n) for n, status in re.findall(r"(\d+) ([a-z -]+?)(?:,|$)", line)}
    assert said == counts
