"""No learner script in any page: the notebook made safe before nbconvert renders it as HTML.

A learner controls their markdown cells, raw cells, attachments and every output their kernel
produces (HTML, JavaScript, Markdown, SVG, widget state, an image's metadata), and the grading
note quotes their files. Rendered as they are, in the feedback page or in formgrader's view of a
submission (which runs on the instructor's Jupyter origin, with the instructor's session), any
of them can run script. SafeHTML, an nbconvert preprocessor registered for every HTMLExporter in
nbgrader_config.py (formgrader's and the feedback's), makes the notebook safe first:

- markdown cells are rendered to HTML here (math drawn as images by mathimages.py, attachments
  inlined as images),
  then cleaned by bleach (nbconvert's own sanitiser) with an allowlist: text markup, tables,
  details, images as inline data (data: addresses) only, links to http(s) and mailto only; the
  result is one HTML block, which nbconvert's markdown pass leaves as it is;
- raw cells are shown as text;
- outputs keep plain text, PNG, JPEG and GIF images, LaTeX and JSON as they are, HTML and
  Markdown cleaned as above; anything else (JavaScript, SVG, widgets, PDF, ...) is replaced by a
  line naming it; an image's width and height are kept only if they are numbers;
- the notebook's widget state (which would load the widget manager's scripts) is dropped.

bleach escapes what it does not allow (it stays readable, as text), so nothing the learner wrote
disappears silently; an image from any other address (a tracking pixel) is not loaded: a short
note with its address, as text, takes its place. No page loads anything from outside: the
feedback page carries a Content-Security-Policy in its head (FEEDBACK_POLICY, set by
feedback.FeedbackExporter, which makes its notebook safe with the same functions) and
formgrader's pages one in their headers (formgrader_policy).
"""
import html
import re
from pathlib import Path

import bleach
import jinja2
from bleach.css_sanitizer import CSSSanitizer
from bleach.html5lib_shim import Filter
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbconvert.preprocessors import Preprocessor

TAGS = {"a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt", "em",
        "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre",
        "q", "s", "samp", "small", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td",
        "tfoot", "th", "thead", "tr", "u", "ul", "var"}
ATTRIBUTES = {"*": ["class", "id", "title", "style"], "a": ["href", "title", "class", "id"],
              "img": ["src", "alt", "title", "width", "height", "class", "style"],
              "td": ["colspan", "rowspan", "style", "class"], "th": ["colspan", "rowspan", "style", "class"],
              "ol": ["start"], "details": ["open"]}
CSS = CSSSanitizer(allowed_css_properties={"display", "text-align", "vertical-align", "margin", "margin-left",
                                          "margin-right", "margin-top", "margin-bottom", "padding",
                                          "color", "background-color", "font-weight", "font-style",
                                          "white-space", "border-collapse", "width", "height"})
SAFE_IMAGE = re.compile(r"data:image/(png|jpeg|gif|svg\+xml);base64,[A-Za-z0-9+/=\s]*\Z")
KEEP = {"text/plain", "image/png", "image/jpeg", "image/gif", "text/latex", "application/json"}
CLEANED = {"text/html", "text/markdown"}
MARK = "ninja_safe_html"  # in resources: the notebook was made safe already


def _attribute_allowed(tag, name, value):
    if name not in ATTRIBUTES.get(tag, ATTRIBUTES["*"]) and name not in ATTRIBUTES["*"]:
        return False
    if name == "href":
        return re.match(r"(https?:|mailto:|#)", value.strip(), re.I) is not None
    if name == "src":  # for RemoteImages, which loads inline data only and names any other address
        return True
    if name in ("width", "height", "colspan", "rowspan", "start"):
        return re.fullmatch(r"\d{1,5}(px|%)?", value.strip()) is not None
    return True


class RemoteImages(Filter):
    """After bleach's sanitiser: an image that is not inline data becomes a note naming its
    address, as text (the page loads nothing from outside)."""

    def __iter__(self):
        for token in super().__iter__():
            if token["type"] in ("StartTag", "EmptyTag") and token["name"] == "img":
                src = (token.get("data") or {}).get((None, "src"), "").strip()
                if not SAFE_IMAGE.match(src):
                    yield {"type": "Characters", "data": f"[image not loaded: {src or 'no address'}]"}
                    continue
            yield token


def clean_html(text):
    """HTML with only the allowlisted tags, attributes, addresses and styles (the rest escaped),
    images as inline data only (RemoteImages)."""
    return bleach.Cleaner(tags=TAGS, attributes=_attribute_allowed, css_sanitizer=CSS,
                          protocols={"http", "https", "mailto", "data"}, strip=False, strip_comments=True,
                          filters=[RemoteImages]).clean(text)


def render_markdown(source, attachments=None):
    """Markdown as HTML (nbconvert's renderer: math kept as text, attachments inlined)."""
    renderer = IPythonRenderer(escape=False, attachments=attachments or {}, anchor_link_text="¶")
    return MarkdownWithMath(renderer=renderer).render(source)


def one_block(fragment):
    """Safe HTML as one HTML block for a markdown cell: no blank line inside, so nbconvert's
    markdown pass takes it as it is (and reads no markdown in it)."""
    return '<div class="ninja-safe">\n' + re.sub(r"\n\s*\n", "\n&#8203;\n", fragment.strip()) + "\n</div>"


def safe_output(out):
    """The output, its data cleaned or named and its metadata reduced to what is safe."""
    if out.get("output_type") not in ("display_data", "execute_result"):
        return out  # streams and errors: text, escaped by every template
    data, removed = {}, []
    for kind, value in (out.get("data") or {}).items():
        if kind in KEEP:
            data[kind] = value
        elif kind == "text/html":
            data[kind] = clean_html(value if isinstance(value, str) else "".join(value))
        elif kind == "text/markdown":
            data["text/html"] = clean_html(render_markdown(value if isinstance(value, str) else "".join(value)))
        else:
            removed.append(kind)
    if removed and not data:
        data["text/plain"] = f"[an output of type {', '.join(removed)} is not shown here]"
    out["data"] = data
    meta = {}
    for kind, m in (out.get("metadata") or {}).items():
        if kind in data and isinstance(m, dict):
            kept = {k: v for k, v in m.items() if k in ("width", "height") and isinstance(v, (int, float))
                    and not isinstance(v, bool)}
            if isinstance(m.get("alt"), str):
                kept["alt"] = m["alt"][:200]
            meta[kind] = kept
    out["metadata"] = meta
    return out


def make_safe(nb):
    """nb (changed in place) with nothing in it that can run script when rendered as HTML, and
    the math of its markdown drawn as images, within mathimages.py's budget per notebook (no page
    here may load MathJax)."""
    from .mathimages import math_renderer
    render_math = math_renderer()  # one budget for the notebook's math
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id is not None and not (isinstance(grade_id, str) and re.fullmatch(r"[\w-]{1,100}", grade_id)):
            cell.metadata.pop("nbgrader")  # formgrader writes it into attributes unescaped
        tags = cell.get("metadata", {}).get("tags")
        if tags is not None:
            cell.metadata["tags"] = [t for t in tags if isinstance(t, str) and re.fullmatch(r"[\w-]{1,50}", t)]
        if cell.cell_type == "markdown":
            attachments = {name: {k: v for k, v in a.items() if k in ("image/png", "image/jpeg", "image/gif")}
                           for name, a in (cell.get("attachments") or {}).items() if isinstance(a, dict)}
            cell.source = one_block(clean_html(render_markdown(render_math(cell.source), attachments)))
            cell.pop("attachments", None)
        elif cell.cell_type == "raw":
            cell.source = html.escape(cell.source)
            cell.metadata.pop("raw_mimetype", None)
            cell.metadata.pop("format", None)
        elif cell.cell_type == "code":
            cell.outputs = [safe_output(o) for o in cell.get("outputs", [])]
    return nb


class SafeHTML(Preprocessor):
    """make_safe as an nbconvert preprocessor (see nbgrader_config.py): for every notebook an
    HTMLExporter renders (formgrader's view too), unless it was made safe already (resources[MARK])."""

    def preprocess(self, nb, resources):
        if not (resources or {}).get(MARK):
            make_safe(nb)
        return nb, resources


# What the feedback page may load: nothing but what it holds (its styles, inline data images and
# fonts); no script, no address of any host (a <meta> cannot carry frame-ancestors).
FEEDBACK_POLICY = ("default-src 'none'; img-src data:; font-src data:; style-src 'unsafe-inline'; "
                   "base-uri 'none'; form-action 'none'")


def with_policy(page, policy=FEEDBACK_POLICY):
    """The page with a Content-Security-Policy <meta> first in its head (first in the page if it
    has no head), before anything in it could load."""
    content = html.escape(policy, quote=False).replace('"', "&quot;")  # its quotes ' as they are
    meta = f'<meta http-equiv="Content-Security-Policy" content="{content}">'
    head = re.search(r"<head\b[^>]*>", page, re.I)
    return page[:head.end()] + "\n" + meta + page[head.end():] if head else meta + "\n" + page


# --- formgrader's pages ---------------------------------------------------------------------

FORMGRADER_HANDLERS = "nbgrader.server_extensions.formgrader.handlers"
FORMGRADER_BASE = "nbgrader.server_extensions.formgrader.base"
HANDLER = re.compile(r"""\son[a-z]+=(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)  # an inline handler's code


def formgrader_policy(nonce, handlers=()):
    """The Content-Security-Policy of formgrader's pages: scripts from the server itself and
    formgrader's own (which carry the page's nonce, and the inline handlers of its templates, by
    hash); no other inline script or handler, no plugins, frames or base URL; nothing fetched
    from another host (images, media and fonts from the server or inline data, styles from the
    server or the page, requests to the server only)."""
    hashes = "".join(f" 'sha256-{h}'" for h in sorted(handlers))
    return ("default-src 'self'; " + f"script-src 'self' 'nonce-{nonce}'" + (f" 'unsafe-hashes'{hashes}" if hashes else "") +
            "; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; media-src 'none'"
            "; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-src 'none'; form-action 'self'"
            "; frame-ancestors 'self'")


def with_nonce(page, nonce):
    """Formgrader's view of a submission with the nonce on formgrader's own scripts: those
    before the notebook (its header and navigation bar) and from its own server (a nonce lets a
    script come from any host: nbconvert's MathJax from a CDN does not run), never one inside it."""
    start = re.search(r'<div\b[^>]*\bid="notebook"', page)
    if start is None:  # not formgrader's page as known: no script gets the nonce (none runs)
        return page
    own = re.compile(r"""<script\b(?![^>]*\bsrc\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:|//))""", re.I)
    return own.sub(f'<script nonce="{nonce}"', page[:start.start()]) + page[start.start():]


def template_handlers(folder):
    """The sha256 (base64) of every inline event handler in formgrader's own templates."""
    import base64
    import hashlib
    found = set()
    for path in Path(folder).rglob("*"):
        if path.suffix in (".tpl", ".j2", ".html") and path.is_file():
            found |= {a or b for a, b in HANDLER.findall(path.read_text(errors="replace"))}
    return {base64.b64encode(hashlib.sha256(h.encode()).digest()).decode() for h in found}


class _NoncedLoader(jinja2.BaseLoader):
    """A Jinja loader over formgrader's: each template's own <script> tags get the page's nonce
    (a variable of the template, so that nothing a page is rendered with can carry it)."""

    def __init__(self, inner):
        self.inner = inner

    def get_source(self, environment, template):
        source, filename, uptodate = self.inner.get_source(environment, template)
        return re.sub(r"<script\b", '<script nonce="{{ csp_nonce }}"', source), filename, uptodate


_safe_envs = {}  # id of formgrader's Jinja environment -> (it, its nonced, autoescaping overlay)


def safe_environment(env):
    """formgrader's Jinja environment, escaping every value it renders (a student id in the
    URL or the gradebook is text, in HTML and in a template's JavaScript strings alike) and
    putting the nonce on its templates' scripts."""
    if id(env) not in _safe_envs:
        _safe_envs[id(env)] = (env, env.overlay(loader=_NoncedLoader(env.loader), autoescape=True))
    return _safe_envs[id(env)][1]


def protect_formgrader():
    """In a Jupyter server running formgrader (whose extension loads nbgrader_config.py, which
    calls this), give each of its pages the policy above: the pages its templates render
    (escaped, their scripts nonced) and its view of a submission. Elsewhere: nothing."""
    import secrets
    import sys
    handlers, base = sys.modules.get(FORMGRADER_HANDLERS), sys.modules.get(FORMGRADER_BASE)
    if handlers is None or base is None or getattr(base.BaseHandler, "_ninja_policy", False):
        return
    inline = template_handlers(handlers.template_path)

    def nonce(self):
        if getattr(self, "_ninja_nonce", None) is None:
            self._ninja_nonce = secrets.token_urlsafe(18)
        return self._ninja_nonce

    def render(self, name, **ns):
        template = safe_environment(self.settings["nbgrader_jinja2_env"]).get_template(name)
        self.set_header("Content-Security-Policy", formgrader_policy(nonce(self), inline))
        return template.render(**ns, csp_nonce=nonce(self))
    base.BaseHandler.render = render
    write = handlers.SubmissionHandler.write

    def protected_write(self, chunk):
        if isinstance(chunk, str) and "<html" in chunk[:2000]:
            self.set_header("Content-Security-Policy", formgrader_policy(nonce(self), inline))
            chunk = with_nonce(chunk, nonce(self))
        return write(self, chunk)
    handlers.SubmissionHandler.write = protected_write
    base.BaseHandler._ninja_policy = True
