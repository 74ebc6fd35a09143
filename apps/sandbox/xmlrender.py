"""`.xml` answers (FACTS §1: "You get XML if you append .xml to the method name", v2 only).
The same envelope as JSON under a `<response>` root: object keys become elements (a key that is
not an XML name becomes `<item key="...">`), list items become `<item>` elements, null an empty
element, booleans `true`/`false`. The docs do not show the XML layout; this one is an inference."""

import re
from xml.etree.ElementTree import Element, SubElement, tostring

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,99}")
_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _BAD_CHARS.sub("", str(value))


def _child(parent: Element, key: str) -> Element:
    if _NAME_RE.fullmatch(key) and not key.lower().startswith("xml"):
        return SubElement(parent, key)
    node = SubElement(parent, "item")
    node.set("key", _BAD_CHARS.sub("", key))
    return node


def _fill(node: Element, value) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _fill(_child(node, str(key)), item)
    elif isinstance(value, list):
        for item in value:
            _fill(SubElement(node, "item"), item)
    else:
        node.text = _text(value)


def render_xml(body) -> bytes:
    root = Element("response")
    _fill(root, body)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + tostring(root, encoding="unicode").encode()
