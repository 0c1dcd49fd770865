#!/usr/bin/env python3
"""Generates docs/api.md, the C API reference, from the doc comments of include/axl.h.

    scripts/gen-api-docs.py            rewrite docs/api.md
    scripts/gen-api-docs.py --check    fail (exit 1, with a diff) if docs/api.md is stale

The header is the manual; this only lays it out. It understands the header's own conventions:
section banners, `/** ... */` before a declaration, `/**< ... */` after a field or constant,
and groups: consecutive declarations with no blank line between them share the doc comment
above the first one. Declarations with no doc comment at all are listed on stderr.
"""
import argparse
import difflib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BANNER = re.compile(r"^/\* -{20,} \*/$")
BANNER_TITLE = re.compile(r"^/\* (\S.*?)\s*\*/$")
DEFINE = re.compile(r"^#\s*define\s+(AXL_[A-Z0-9_]+)(?:\s+(.*?))?\s*(?:/\*\*<\s*(.*?)\s*\*/)?\s*$")
NOT_CONSTANTS = {"AXL_H", "AXL_API", "AXL_CALL"}


@dataclass
class Field:
    name: str
    decl: str
    doc: str


@dataclass
class Item:
    kind: str                  # function, struct, handle, callback, typedef, constants
    names: list
    doc: str = ""
    code: str = ""
    fields: list = field(default_factory=list)      # Field, for structs
    constants: list = field(default_factory=list)   # (name, value, doc)


@dataclass
class Section:
    title: str
    items: list = field(default_factory=list)


def comment_text(lines):
    """The text of a /** ... */ comment given as source lines, paragraphs kept."""
    text = "\n".join(lines).strip()
    text = re.sub(r"^/\*\*<?", "", text)
    text = re.sub(r"\*/$", "", text)
    out = []
    for line in text.split("\n"):
        line = re.sub(r"^\s*\*(?!/)", "", line)
        out.append(line.rstrip())
    while out and not out[0].strip():
        out.pop(0)
    while out and not out[-1].strip():
        out.pop()
    if not out:
        return ""
    indent = min(len(l) - len(l.lstrip()) for l in out if l.strip())
    return "\n".join(l[indent:] for l in out)


def strip_macros(code):
    code = re.sub(r"\bAXL_API\s+", "", code)
    code = re.sub(r"\s*\bAXL_CALL\b\s*", " ", code)
    code = re.sub(r"\(\s+\*", "(*", code)
    code = re.sub(r"\*\s+(?=\w)", "*", code)
    code = re.sub(r"\s+", " ", code).strip()
    code = code.replace("( ", "(").replace(" )", ")").replace(" ;", ";").replace(" ,", ",")
    return code


def format_signature(code, width=96):
    """One line if it fits, else one parameter a line."""
    if len(code) <= width:
        return code
    m = re.match(r"^(.*?\w+\()(.*)(\);)$", code)
    if not m:
        return code
    head, params, tail = m.groups()
    parts, depth, current = [], 0, ""
    for ch in params:
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        current += ch
    parts.append(current.strip())
    return head + "\n" + ",\n".join("    " + p for p in parts) + tail


def function_name(code):
    m = re.search(r"(\w+)\s*\((?!\s*\*)", code)
    return m.group(1) if m else "?"


def parse_struct(body_lines):
    """Fields of a struct body (the lines between the braces)."""
    fields, pending = [], []
    i = 0
    while i < len(body_lines):
        line = body_lines[i].strip()
        if line.startswith("/**") and not line.startswith("/**<"):
            block = [line]
            while "*/" not in block[-1]:
                i += 1
                block.append(body_lines[i])
            pending = block
            i += 1
            continue
        if not line:
            i += 1
            continue
        decl = line
        while ";" not in decl or ("/**<" in decl and not decl.rstrip().endswith("*/")):
            i += 1
            decl += " " + body_lines[i].strip()
        m = re.match(r"^(.*?;)\s*(?:/\*\*<\s*(.*?)\s*\*/)?\s*$", decl)
        decl_code, trailing = m.group(1), m.group(2) or ""
        decl_code = strip_macros(decl_code)
        fp = re.search(r"\(\*(\w+)\)", decl_code)
        name = fp.group(1) if fp else re.search(r"(\w+)\s*;$", decl_code).group(1)
        doc = " ".join(filter(None, [comment_text(pending) if pending else "", trailing]))
        fields.append(Field(name, decl_code, doc))
        pending = []
        i += 1
    return fields


def parse_header(path):
    lines = path.read_text().split("\n")
    intro, sections = "", []
    section = None
    pending_doc = None          # text of the last /** */ not yet attached
    last_item = None            # the item a following declaration may join (no blank line)
    i = 0
    # The file's leading comment is the introduction.
    if lines[0].startswith("/*"):
        block = []
        while True:
            block.append(lines[i])
            if "*/" in lines[i]:
                break
            i += 1
        i += 1
        intro = comment_text(["/**" + block[0][2:]] + block[1:])

    def add(item):
        nonlocal last_item
        if section is None:
            return
        section.items.append(item)
        last_item = item

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if BANNER.match(stripped) and i + 2 < len(lines) and BANNER.match(lines[i + 2].strip()):
            section = Section(BANNER_TITLE.match(lines[i + 1].strip()).group(1))
            sections.append(section)
            pending_doc, last_item = None, None
            i += 3
            continue
        if not stripped:
            last_item = None
            i += 1
            continue
        if stripped.startswith("/**") and not stripped.startswith("/**<"):
            block = [line]
            while "*/" not in block[-1]:
                i += 1
                block.append(lines[i])
            pending_doc = comment_text(block)
            i += 1
            continue
        while stripped.startswith("#") and "/**<" in stripped and not stripped.endswith("*/"):
            i += 1
            stripped += " " + lines[i].strip()
        m = DEFINE.match(stripped)
        if m and m.group(1) not in NOT_CONSTANTS and m.group(2):
            name, value, doc = m.group(1), m.group(2), m.group(3) or ""
            if last_item is not None and last_item.kind == "constants":
                # A run of #defines is one table; a doc comment inside the run is that row's.
                last_item.constants.append((name, value, doc or pending_doc or ""))
                pending_doc = None
            else:
                add(Item("constants", [], doc=pending_doc or "", constants=[(name, value, doc)]))
                pending_doc = None
            i += 1
            continue
        if stripped.startswith("#"):
            i += 1
            continue
        if stripped.startswith("typedef struct") and stripped.endswith(";") and "{" not in stripped:
            name = re.search(r"(\w+)\s*;$", stripped).group(1)
            add(Item("handle", [name], doc=pending_doc or "", code=stripped))
            pending_doc = None
            i += 1
            continue
        if stripped.startswith("typedef struct") and stripped.endswith("{"):
            body = []
            i += 1
            while not lines[i].strip().startswith("}"):
                body.append(lines[i])
                i += 1
            name = re.search(r"(\w+)\s*;", lines[i]).group(1)
            item = Item("struct", [name], doc=pending_doc or "", fields=parse_struct(body))
            add(item)
            pending_doc = None
            i += 1
            continue
        if stripped.startswith("typedef") or stripped.startswith("AXL_API"):
            decl = stripped
            while not decl.rstrip().endswith(";"):
                i += 1
                decl += " " + lines[i].strip()
            code = strip_macros(decl)
            if stripped.startswith("AXL_API"):
                kind, name = "function", function_name(code)
            elif re.search(r"\(\*\w+\)", code):
                kind, name = "callback", re.search(r"\(\*(\w+)\)", code).group(1)
            else:
                kind, name = "typedef", re.search(r"(\w+)\s*;$", code).group(1)
            if (kind == "function" and pending_doc is None and last_item is not None
                    and last_item.kind == "function"):
                last_item.names.append(name)
                last_item.code += "\n" + format_signature(code)
            else:
                add(Item(kind, [name], doc=pending_doc or "", code=format_signature(code)))
                pending_doc = None
            i += 1
            continue
        i += 1
    return intro, sections


class Renderer:
    def __init__(self, known):
        self.known = known

    def code_span(self, token):
        bare = token[:-2] if token.endswith("()") else token
        if bare in self.known:
            return f"[`{token}`](#{bare.lower()})"
        return f"`{token}`"

    def words(self, text):
        """Inline text: identifiers (anything with _ or *) become code, the rest is escaped."""
        out = []
        for part_index, part in enumerate(re.split(r"(`[^`]*`)", text)):
            if part_index % 2 == 1:
                out.append(part)
                continue
            pieces = re.split(r"(\s+)", part)
            for piece in pieces:
                if not piece or piece.isspace():
                    out.append(piece)
                    continue
                lead = re.match(r"^[(\[\"']*", piece).group(0)
                rest = piece[len(lead):]
                trail = re.search(r"[)\],.;:!?\"']*$", rest).group(0)
                core = rest[: len(rest) - len(trail)]
                if core.endswith("(") and trail.startswith(")"):
                    core, trail = core + ")", trail[1:]
                if core and re.search(r"[_*]", core):
                    out.append(lead + self.code_span(core) + trail)
                else:
                    out.append(re.sub(r"([*<>|\\])", r"\\\1", piece))
        return "".join(out)

    def block(self, text):
        """Paragraphs and '- ' bullet lists of a doc comment."""
        if not text:
            return ""
        paragraphs, current, bullets = [], [], False
        for line in text.split("\n"):
            s = line.strip()
            if not s:
                if current:
                    paragraphs.append(" ".join(current))
                current = []
                continue
            if s.startswith("- "):
                if current:
                    paragraphs.append(" ".join(current))
                current, bullets = [s], True
                continue
            current.append(s)
        if current:
            paragraphs.append(" ".join(current))
        out = []
        for p in paragraphs:
            if p.startswith("- "):
                out.append("- " + self.words(p[2:]))
            else:
                if out and out[-1].startswith("- "):
                    out.append("")
                out.append(self.words(p))
                out.append("")
        return "\n".join(out).strip() + "\n"

    def cell(self, text):
        return self.words(text).replace("\n", " ") if text else ""


def anchors(names):
    return "".join(f'<a id="{n.lower()}"></a>' for n in names)


def render(intro, sections, header_text):
    version = {k: re.search(rf"#define {k} (\d+)", header_text).group(1)
               for k in ("AXL_VERSION_MAJOR", "AXL_VERSION_MINOR", "AXL_VERSION_PATCH",
                         "AXL_ABI_VERSION")}
    known = set()
    for s in sections:
        for item in s.items:
            known.update(item.names)
            known.update(c[0] for c in item.constants)
    r = Renderer(known)
    out = ["# axl C API reference", "",
           "<!-- Generated from include/axl.h by scripts/gen-api-docs.py; do not edit by hand. -->",
           "",
           f"axl {version['AXL_VERSION_MAJOR']}.{version['AXL_VERSION_MINOR']}."
           f"{version['AXL_VERSION_PATCH']}, ABI {version['AXL_ABI_VERSION']} "
           f"(`libaxl.so.{version['AXL_ABI_VERSION']}`). The header "
           "[`include/axl.h`](../include/axl.h) is the source of this page; "
           "[ABI.md](../ABI.md) is the compatibility contract and "
           "[getting-started-c.md](getting-started-c.md) shows a whole program.", ""]
    out.append(r.block(intro))
    out.append("## Contents\n")
    for s in sections:
        slug = re.sub(r"[^a-z0-9 -]", "", s.title.lower()).replace(" ", "-")
        out.append(f"- [{s.title}](#{slug})")
    out.append("- [Index](#index)\n")

    for s in sections:
        out.append(f"## {s.title}\n")
        for item in s.items:
            if item.kind == "constants":
                if len(item.constants) == 1 and not item.constants[0][2]:
                    item.constants[0] = (*item.constants[0][:2], item.doc)
                elif item.doc:
                    out.append(r.block(item.doc))
                out.append("| constant | value | meaning |")
                out.append("|---|---|---|")
                for name, value, doc in item.constants:
                    out.append(f"| {anchors([name])}`{name}` | `{value}` | {r.cell(doc)} |")
                out.append("")
                continue
            title = ", ".join(f"`{n}`" for n in item.names)
            what = {"function": "", "struct": " (struct)", "handle": " (handle)",
                    "callback": " (callback type)", "typedef": " (type)"}[item.kind]
            out.append(f"### {anchors(item.names)}{title}{what}\n")
            if item.kind == "struct":
                out.append(r.block(item.doc) if item.doc else "")
                out.append("| field | declaration | meaning |")
                out.append("|---|---|---|")
                for f in item.fields:
                    out.append(f"| `{f.name}` | `{f.decl}` | {r.cell(f.doc)} |")
                out.append("")
                continue
            out.append("```c\n" + item.code + "\n```\n")
            if item.doc:
                out.append(r.block(item.doc))

    out.append("## Index\n")
    entries = []
    for s in sections:
        for item in s.items:
            for n in item.names:
                entries.append((n, item.kind))
    for name, kind in sorted(entries):
        out.append(f"- [`{name}`](#{name.lower()}) {kind}")
    text = "\n".join(out)
    text = re.sub(r"\n{3,}", "\n\n", text).rstrip() + "\n"
    return text


def undocumented(sections):
    return [n for s in sections for item in s.items
            if item.kind != "constants" and not item.doc for n in item.names]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--header", type=Path, default=ROOT / "include" / "axl.h")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "api.md")
    parser.add_argument("--check", action="store_true",
                        help="compare with the existing file instead of writing it")
    args = parser.parse_args()

    header_text = args.header.read_text()
    intro, sections = parse_header(args.header)
    text = render(intro, sections, header_text)
    missing = undocumented(sections)
    if missing:
        print("gen-api-docs: no doc comment on: " + ", ".join(missing), file=sys.stderr)

    if not args.check:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"gen-api-docs: wrote {args.out}")
        return 0
    current = args.out.read_text() if args.out.exists() else ""
    if current == text:
        print(f"gen-api-docs: {args.out} is up to date with {args.header}")
        return 0
    diff = difflib.unified_diff(current.splitlines(), text.splitlines(), "docs/api.md (committed)",
                                "docs/api.md (from include/axl.h)", lineterm="", n=1)
    print("\n".join(list(diff)[:80]))
    print(f"gen-api-docs: {args.out} is stale: include/axl.h changed. Regenerate it with "
          "scripts/gen-api-docs.py and commit the result.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
