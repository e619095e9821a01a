"""
The man pages (man/*.scd) against what the programs say and do: every
option --help prints is described in the page and every option the page
describes is in --help, for tunneld(1) and dispatcher(8); every mode too;
tunneld-policy(5) names exactly the fields the dispatcher's C code gives
to and accepts from the Lua policy; each page builds with scdoc and
renders without a warning from man.
"""

import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT, TUNNELD

DISPATCHER = os.path.join(os.path.dirname(TUNNELD), "dispatcher")
MAN = os.path.join(ROOT, "man")

# An option as the first thing on a line of --help ("  -name ...") or as
# a definition in a page ("*-name* _ARG_", "*-h*, *-help*, *--help*").
OPT = re.compile(r"(?<![\w-])--?([A-Za-z][A-Za-z0-9]*)")


def help_options(binary):
    """The options --help describes: the dash-words of the first column
    (up to two spaces) of its lines that start with a dash."""
    out = subprocess.run([binary, "--help"], capture_output=True, text=True,
                         check=True).stdout
    names = set()
    for line in out.splitlines():
        if re.match(r"\s+-", line):
            first = re.split(r"\s{2,}", line.strip())[0]
            names.update(m.group(1) for m in OPT.finditer(first))
    return names


def page(name):
    with open(os.path.join(MAN, name)) as f:
        return f.read()


def sections(text):
    """{heading: body} of an scdoc page."""
    out, head = {}, None
    for line in text.splitlines():
        m = re.match(r"# (.+)", line)
        if m:
            head = m.group(1)
            out[head] = []
        elif head:
            out[head].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def page_options(text, heads):
    """The options the page defines: a definition term line (unindented,
    starting with *-) in the given sections."""
    names = set()
    for head, body in sections(text).items():
        if head not in heads:
            continue
        for line in body.splitlines():
            if line.startswith("*-"):
                terms = re.findall(r"\*(--?[A-Za-z][A-Za-z0-9]*)\*", line)
                names.update(t.lstrip("-") for t in terms)
    return names


def test_tunneld_options():
    helped = help_options(TUNNELD)
    paged = page_options(page("tunneld.1.scd"),
                         ("OPTIONS", "WEBSOCKET CLIENT OPTIONS"))
    assert len(helped) > 30, helped
    assert helped - paged == set(), "in --help, not in tunneld(1)"
    assert paged - helped == set(), "in tunneld(1), not in --help"


def test_dispatcher_options():
    helped = help_options(DISPATCHER)
    paged = page_options(page("dispatcher.8.scd"), ("OPTIONS",))
    assert len(helped) > 20, helped
    assert helped - paged == set(), "in --help, not in dispatcher(8)"
    assert paged - helped == set(), "in dispatcher(8), not in --help"


def test_tunneld_modes():
    out = subprocess.run([TUNNELD, "--help"], capture_output=True,
                         text=True, check=True).stdout
    block = out[out.index("Modes:"):out.index("Addresses")]
    helped = set(re.findall(r"^  ((?:r-)?(?:ws)?(?:server|client))\s",
                            block, re.M))
    paged = set(re.findall(r"^\*((?:r-)?(?:ws)?(?:server|client))\*$",
                           sections(page("tunneld.1.scd"))["MODES"], re.M))
    assert len(helped) == 8 and helped == paged, (helped, paged)


def c_strings(path, start, end):
    """The string literals of a C file between two markers."""
    with open(os.path.join(ROOT, path)) as f:
        text = f.read()
    i = text.index(start)
    return re.findall(r'"([A-Za-z_]+)"', text[i:text.index(end, i)])


def test_policy_fields():
    """tunneld-policy(5) names the request's fields as conv_push_req sets
    them and getTunnelInfo's as conv_fields lists them, no more."""
    text = sections(page("tunneld-policy.5.scd"))
    req = set(c_strings("dispatcher/policy_conv.c", "conv_push_req(lua_State",
                        "\n}\n"))
    paged = {m.replace("\\_", "_") for m in
             re.findall(r"^\*req\.([a-z\\_]+)\*$", text["THE REQUEST TABLE"],
                        re.M)}
    assert len(req) == 8 and paged == req, (paged, req)
    fields = set(c_strings("dispatcher/policy_conv.c", "conv_fields[] = {",
                           "};"))
    paged = set(re.findall(r"^\*([A-Za-z]+)\*$", text["GETTUNNELINFO"],
                           re.M))
    assert len(fields) == 17 and paged == fields, (paged ^ fields)


@pytest.mark.parametrize("name", ["tunneld.1", "dispatcher.8",
                                  "tunneld-policy.5"])
def test_renders(name, tmp_path):
    """scdoc builds it and man renders it without a warning."""
    if shutil.which("scdoc") is None or shutil.which("man") is None:
        pytest.skip("no scdoc or man")
    out = tmp_path / name
    with open(os.path.join(MAN, name + ".scd"), "rb") as src:
        roff = subprocess.run(["scdoc"], stdin=src, capture_output=True,
                              check=True).stdout
    out.write_bytes(roff)
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8",
               MAN_KEEP_STDERR="1")
    r = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", str(out)],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "", r.stderr
    assert "NAME" in r.stdout and "SEE ALSO" in r.stdout
