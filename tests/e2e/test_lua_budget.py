"""
The policy's budgets reach into C, and the query reaches it decoded once.

canAccept runs on the public port's two pool threads.  A script that
makes a library function loop in C without running a VM instruction
(string.rep("", 2^62), table.move over 2^63 elements, a backtracking
pattern) never met the count hook: two such requests stalled the port.
Now those loops are charged to the instruction budget before they run
(a pattern by its worst case, refused when that does not fit): the
request gets a 500 and the other clients are answered meanwhile.

The query was decoded twice (by libmicrohttpd, then again when the req
table was built): ?session=alpha%252Ebob routed on "alpha%2Ebob" while
the script saw req.query.session = "alpha.bob", and an encoded
"&session=" inside another value changed req.query.session.
"""

import threading

import dispatch as D
from dispatch import dispatch  # noqa: F401  (the fixture)

HANDLER = """
function getTunnelInfo(req) return nil, "no tunnels here" end
"""

CANACCEPT = """
function canAccept(req)
  local q = req.query
  if q.evil == "rep" then
    local s = string.rep("", 2^62)
    return true
  elseif q.evil == "move" then
    table.move({}, 1, math.maxinteger - 1, 2)
    return true
  elseif q.evil == "pattern" then
    string.find(string.rep("a", 20000), ".-.-.-.-.-b")
    return true
  elseif q.echo then
    return false, 403, "session=[" .. req.session .. "] query.session=[" ..
        tostring(q.session) .. "] x=[" .. tostring(q.x) .. "]"
  end
  return true
end
"""

TIMEOUT = 60.0      # generous: the machine is loaded; old code never answers


def _start(dispatch, tmp_path):  # noqa: F811
    h, c = D.write_policy(tmp_path, HANDLER, CANACCEPT)
    return dispatch.start(h, c, "-reqInfo")


def test_c_loops_are_bounded(dispatch, tmp_path):  # noqa: F811
    """Six requests whose canAccept loops in C (string.rep, table.move, a
    backtracking pattern), two of each at once, more than the port's
    pool threads: each gets a 500, and a plain client sent while they run
    is answered (?reqinfo, 200)."""
    d = _start(dispatch, tmp_path)
    replies, errors = {}, []

    def evil(name, i):
        try:
            replies[(name, i)] = D.upgrade(d.port, "/?evil=" + name,
                                           timeout=TIMEOUT)
        except Exception as e:              # a timeout on the old code
            errors.append("%s #%d: %r" % (name, i, e))

    threads = [threading.Thread(target=evil, args=(n, i))
               for n in ("rep", "move", "pattern") for i in range(2)]
    for t in threads:
        t.start()
    legit = D.upgrade(d.port, "/?reqinfo=1", timeout=TIMEOUT)
    for t in threads:
        t.join(TIMEOUT + 10)
    assert not errors, "\n".join(errors) + "\n" + d.describe()
    assert legit.status == 200, legit
    assert b"Count" in legit.body, legit
    for k, r in sorted(replies.items()):
        assert r.status == 500, (k, r)
    assert len(replies) == 6
    log = d.stderr()
    # rep and move are charged to the budget; the pattern is refused
    # before it runs, its worst case being too much for the budget.
    assert log.count("instruction budget of") >= 4, d.describe()
    assert log.count("pattern too complex for a subject of 20000 bytes") \
        >= 2, d.describe()
    # The port still works afterwards.
    again = D.upgrade(d.port, "/?reqinfo=1", timeout=TIMEOUT)
    assert again.status == 200, again


def _echo(d, query):
    r = D.upgrade(d.port, "/?echo=1&" + query, timeout=TIMEOUT)
    assert r.status == 403, r
    return r.body.decode("latin-1")


def test_query_decoded_once(dispatch, tmp_path):  # noqa: F811
    """req.query.session is the session the dispatcher routes on
    (req.session), decoded once; an encoded '&session=' inside another
    value stays inside that value."""
    d = _start(dispatch, tmp_path)
    body = _echo(d, "session=alpha%252Ebob")
    assert body == ("session=[alpha%2Ebob] query.session=[alpha%2Ebob] "
                    "x=[nil]"), body
    body = _echo(d, "x=%26session%3Devil&session=real")
    assert body == ("session=[real] query.session=[real] "
                    "x=[&session=evil]"), body
    body = _echo(d, "x=a%2Bb%25c%3D&session=s%2B1")
    assert body == ("session=[s+1] query.session=[s+1] x=[a+b%c=]"), body
