"""Write the page template `dvc plots show` / `dvc plots diff` fill, with vega, vega-lite and
vega-embed inlined, so the plots draw with no network (DVC's own page loads them from a CDN).

`make install` runs it once: npm fetches the three packages' tarballs at the pinned versions into
build/vega/ (each checked against the registry's sha512 below; one already there is not fetched
again), and their minified UMD builds go into the template in the order vega-embed's build needs
(it reads the globals `vega` and `vegaLite`), their licences (BSD-3-Clause) in a comment above.
.dvc/config points `plots.html_template` at the output (a path relative to .dvc/). npm runs only
here, at install time; the template is a function of the three tarballs, byte for byte.

    python3 tools/plots_template.py [OUT]        # OUT: build/plots_template.html
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES_DIR = ROOT / "build" / "vega"
OUT = ROOT / "build" / "plots_template.html"

# The newest release of each major line DVC's own page loads (vega 5.20.2, vega-lite 5.2.0,
# vega-embed 6.18.2): DVC's templates and .dvc/plots/*.json are Vega-Lite v5 specs, which these
# draw as DVC's page does. (vega 6 / vega-lite 6 / vega-embed 7 draw them too, but warn once per
# plot that the spec is v5.) Peers: vega-lite 5.23.0 needs vega ^5.24, vega-embed 6.29.0 vega ^5.21.
# (name, version, dist.integrity as the npm registry gives it)
PACKAGES = (
    ("vega", "5.33.1",
     "sha512-1fArfVDUqVbb5z8n+/nVQb+VNBzx8svY6CrsyTK4Ujm4yrd9I1auoKxBAPXLCavY1LcrbHUskQbGUP8gXOzyQw=="),
    ("vega-lite", "5.23.0",
     "sha512-l4J6+AWE3DIjvovEoHl2LdtCUkfm4zs8Xxx7INwZEAv+XVb6kR6vIN1gt3t2gN2gs/y4DYTs/RPoTeYAuEg6mA=="),
    ("vega-embed", "6.29.0",
     "sha512-PmlshTLtLFLgWtF/b23T1OwX53AugJ9RZ3qPE2c01VFAbgt3/GSNI/etzA/GzdrkceXFma+FDHNXUppKuM0U6Q=="),
)

# DVC fills {refresh_tag} and {plot_divs} (dvc_render/html.py; {plot_divs} is required). There is
# deliberately no {scripts}: that is where DVC would put its CDN <script src> tags.
PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {{refresh_tag}}
    <title>DVC Plot</title>
    <!-- {names}: inlined by tools/plots_template.py (`make install`) so this page needs no network.
{licences}
    -->
{scripts}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def tarball(name: str, version: str, expected: str) -> Path:
    """build/vega/<name>-<version>.tgz, fetched by npm unless already there; checked either way."""
    path = PACKAGES_DIR / f"{name}-{version}.tgz"
    if not path.is_file() or integrity(path) != expected:
        npm = shutil.which("npm")
        if npm is None:
            sys.exit("plots template: npm not found; install Node.js's npm (Debian: apt-get install npm)")
        PACKAGES_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "pack", "--silent", "--pack-destination", str(PACKAGES_DIR), f"{name}@{version}"],
                       check=True, stdout=subprocess.DEVNULL)
        if integrity(path) != expected:
            sys.exit(f"plots template: {path.name} does not match its pinned sha512 ({expected})")
    return path


def member(path: Path, name: str) -> str | None:
    with tarfile.open(path) as tar:
        try:
            return tar.extractfile(f"package/{name}").read().decode("utf-8")
        except KeyError:
            return None


def licence(path: Path, name: str, version: str) -> str:
    """The package's LICENSE; vega 5.33.1's tarball ships none, so then its package.json licence
    and author, and the repository that keeps the text."""
    text = member(path, "LICENSE")
    if text is None:
        meta = json.loads(member(path, "package.json"))
        text = (f"{meta['license']}, {meta.get('author', '')}; the npm tarball has no LICENSE file: "
                f"see LICENSE in https://github.com/{meta['repository']}")
    if "--" in text:
        sys.exit(f"plots template: {name}'s licence contains '--', which an HTML comment cannot hold")
    return text.strip()


def inline_js(js: str, origin: str) -> str:
    """``js`` made safe inside <script>: its source-map comment dropped (no file to fetch), any
    `</script` escaped; `<!--` or `<script` would change how HTML parses the block, so refuse."""
    js = re.sub(r"^//# sourceMappingURL=\S*\s*$", "", js, flags=re.M).rstrip()
    js = re.sub(r"</(script)", r"<\\/\1", js, flags=re.I)
    for bad in ("<!--", "<script", "{plot_divs}", "{refresh_tag}", "{scripts}"):
        if bad in js.lower():
            sys.exit(f"plots template: {origin} contains {bad!r}; it cannot be inlined as is")
    return js


def build_page() -> str:
    scripts, licences = [], []
    for name, version, expected in PACKAGES:
        path = tarball(name, version, expected)
        js = inline_js(member(path, f"build/{name}.min.js"), f"{name}@{version}")
        scripts.append(f"    <script>/* {name}@{version} */\n{js}\n    </script>")
        licences.append(f"\n    {name}@{version} (npm), licence:\n\n{licence(path, name, version)}\n")
    names = ", ".join(f"{name} {version}" for name, version, _ in PACKAGES)
    return PAGE.format(names=names, licences="".join(licences), scripts="\n".join(scripts))


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else OUT
    page = build_page()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    print(f"{out}: {len(page.encode()) // 1024} KiB ({', '.join(f'{n} {v}' for n, v, _ in PACKAGES)})")


if __name__ == "__main__":
    main(sys.argv[1:])
