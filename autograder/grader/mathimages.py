"""Math drawn as images: the $...$ and $$...$$ of a markdown cell as inline SVG images
(matplotlib's mathtext), so that a page shows it where no MathJax script runs or may load (the
feedback page, formgrader's view of a submission: pages.py forbids loading from outside)."""
import base64
import functools
import html
import io
import re

MATH = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$", re.S)
CODE = re.compile(r"(```.*?```|`[^`\n]*`)", re.S)
# What one notebook's math may cost to draw (about 10 ms a formula, more for a long one): the
# course's own notebooks hold at most 37 formulas and 706 characters of TeX. A learner's
# markdown is not bounded otherwise, so beyond this its math is shown as code.
FORMULAS = 200
CHARACTERS = 5000


def as_code(tex):
    return f"<code>{html.escape(' '.join(tex.split()))}</code>"


# Every learner's notebook repeats the course's formulas: a process drawing many pages
# (generate_feedback, formgrader) draws each once. Only formulas of the course's size are kept,
# so what the cache holds stays small whatever learners write.
CACHED = 512       # formulas
CACHED_LENGTH = 200  # characters of TeX, at most, of a formula kept


def tex_image(tex, display=False):
    """LaTeX math as an inline SVG image (matplotlib's mathtext: no MathJax, no network), or
    the source as code where mathtext cannot draw it."""
    if len(tex) <= CACHED_LENGTH:
        return _cached(tex, display)
    return _draw(tex, display)


@functools.lru_cache(maxsize=CACHED)
def _cached(tex, display):
    return _draw(tex, display)


def _draw(tex, display):
    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties
    from matplotlib.mathtext import MathTextParser
    source = " ".join(tex.split())
    tex = re.sub(r"\\frac(\w)(\w)", r"\\frac{\1}{\2}", source)  # \frac1n: TeX's, not mathtext's
    prop = FontProperties(size=14 if display else 11)
    try:
        with rc_context({"mathtext.fontset": "cm", "svg.fonttype": "path", "svg.hashsalt": "backprop-ninja"}):
            width, height, depth, *_ = MathTextParser("path").parse(f"${tex}$", dpi=72, prop=prop)
            fig = Figure(figsize=(width / 72, height / 72))
            fig.text(0, depth / height, f"${tex}$", fontproperties=prop)
            svg = io.BytesIO()
            fig.savefig(svg, format="svg", metadata={"Date": None})
    except Exception:  # mathtext knows most of TeX's math, not all of it
        return as_code(source)
    img = (f'<img class="math" alt="{html.escape(source)}" style="vertical-align: {-depth:.1f}pt" '
           f'src="data:image/svg+xml;base64,{base64.b64encode(svg.getvalue()).decode()}">')
    return f'<span style="display: block; text-align: center; margin: 0.5em 0">{img}</span>' if display else img


def math_renderer(formulas=FORMULAS, characters=CHARACTERS):
    """render(markdown) for the markdown cells of one notebook: each with its $...$ and $$...$$
    math drawn as images (code spans left alone), until the notebook has drawn `formulas`
    formulas or `characters` characters of TeX; math beyond that is shown as code."""
    left = {"formulas": formulas, "characters": characters}

    def draw(m):
        tex = m.group(1) or m.group(2)
        if left["formulas"] < 1 or len(tex) > left["characters"]:
            return as_code(tex)
        left["formulas"] -= 1
        left["characters"] -= len(tex)
        return tex_image(tex, display=m.group(1) is not None)

    def render(markdown):
        parts = CODE.split(markdown)
        for i in range(0, len(parts), 2):
            parts[i] = MATH.sub(draw, parts[i])
        return "".join(parts)
    return render
