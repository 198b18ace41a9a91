"""DNS wire format on the hot path: parse queries by hand, answer from pre-rendered bytes.

dnspython renders every answer (names, compression, rdata) once, when it enters a cache;
answering a query then costs a header, the question bytes the client sent and a cached
tail. Parsing a query with dnspython costs tens of microseconds, more than everything else
a cached answer needs, so queries are parsed here with a small, strict reader instead: it
accepts what a resolver sends (one question, an optional OPT record) and turns everything
else into FORMERR, NOTIMP or silence, never an exception that escapes.

Two facts make the cached tail reusable for every client. The question section is copied
from the query, so its length is the same for every spelling of a name and compression
pointers into it (offset 12) stay valid while the owner names show the client's own
letter case (DNS 0x20). And compression pointers only point backwards, so every prefix of
the tail that ends on a record boundary is itself a valid message body: truncating for a
small UDP buffer is slicing at a recorded cut, never re-rendering.
"""

from __future__ import annotations

import bisect
import io
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dns.name
import dns.rdata

HEADER = struct.Struct(">HHHHHH")
RR_FIXED = struct.Struct(">HHIH")
U16 = struct.Struct(">H")
U32 = struct.Struct(">I")

QR, AA, TC, RD, RA, AD, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0020, 0x0010
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16  # extended rcode, carried in the OPT record
RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}

OPT = 41
CLASS_IN = 1
EDNS_SIZE = 1232  # what we advertise and ask upstreams for (DNS flag day 2020: no fragmentation)
MAX_UDP = 4096  # the most we ever put in one UDP answer, whatever a client advertises
MAX_NAME = 255

RR = tuple[dns.name.Name, int, dns.rdata.Rdata]  # owner, TTL, data


class Drop(Exception):
    """A packet not worth an answer: shorter than a header, or itself a response."""


class Reject(Exception):
    """A query answered with an error and nothing else (FORMERR, NOTIMP, BADVERS)."""

    def __init__(self, reply: bytes, rcode: int) -> None:
        super().__init__(rcode)
        self.reply = reply
        self.rcode = rcode


class Query:
    """What the server needs of a parsed query; ``key`` is the cache key (name lower-cased)."""

    __slots__ = ("do", "edns", "flags", "id", "key", "qclass", "qname_end", "qtype", "question", "udp_size")

    def __init__(self, qid: int, flags: int, question: bytes, key: bytes, qname_end: int, qtype: int,
                 qclass: int, edns: bool, udp_size: int, do: bool) -> None:
        self.id = qid
        self.flags = flags
        self.question = question  # as sent: the name in the client's case, type, class
        self.key = key
        self.qname_end = qname_end  # length of the name within ``question``
        self.qtype = qtype
        self.qclass = qclass
        self.edns = edns
        self.udp_size = udp_size
        self.do = do

    @property
    def udp_limit(self) -> int:
        if not self.edns:
            return 512
        return max(512, min(self.udp_size, MAX_UDP))

    def labels(self) -> list[str]:
        """The lower-cased labels of the name, without the root."""
        out: list[str] = []
        key, off = self.key, 0
        while key[off]:
            n = key[off]
            out.append(key[off + 1:off + 1 + n].decode("latin-1"))
            off += 1 + n
        return out


def error_reply(qid: int, flags: int, rcode: int) -> bytes:
    """A header-only answer: no question could be trusted enough to be echoed."""
    return HEADER.pack(qid, QR | (flags & 0x7800) | (flags & RD) | rcode, 0, 0, 0, 0)


def opt_record(do: bool = False, ext_rcode: int = 0) -> bytes:
    return b"\x00" + RR_FIXED.pack(OPT, EDNS_SIZE, (ext_rcode << 24) | (0x8000 if do else 0), 0)


def skip_name(data: bytes, off: int) -> int:
    """Offset after a (possibly compressed) name; skipping never follows pointers, so no loops."""
    n = len(data)
    start = off
    while True:
        if off >= n:
            raise IndexError("name runs past the end")
        ln = data[off]
        if ln == 0:
            return off + 1
        if ln & 0xC0 == 0xC0:
            if off + 2 > n:
                raise IndexError("pointer runs past the end")
            return off + 2
        if ln & 0xC0:
            raise ValueError("extended label type")
        off += 1 + ln
        if off - start > MAX_NAME:
            raise ValueError("name too long")


def parse_query(data: bytes) -> Query:
    """Parse a query, or raise :class:`Drop` / :class:`Reject` with the answer it deserves."""
    n = len(data)
    if n < 12:
        raise Drop
    qid, flags, qd, an, ns, ar = HEADER.unpack_from(data)
    if flags & QR:
        raise Drop  # answering responses is how reflection loops start
    if flags & 0x7800:
        raise Reject(error_reply(qid, flags, NOTIMP), NOTIMP)
    if qd != 1 or an or ns or ar > 2:
        raise Reject(error_reply(qid, flags, FORMERR), FORMERR)
    off = 12
    while True:
        if off >= n:
            raise Reject(error_reply(qid, flags, FORMERR), FORMERR)
        ln = data[off]
        if ln == 0:
            off += 1
            break
        if ln > 63:  # a pointer (nothing before the question to point at) or an extended label
            raise Reject(error_reply(qid, flags, FORMERR), FORMERR)
        off += 1 + ln
        if off - 12 >= MAX_NAME:
            raise Reject(error_reply(qid, flags, FORMERR), FORMERR)
    qname_end = off
    if off + 4 > n:
        raise Reject(error_reply(qid, flags, FORMERR), FORMERR)
    qtype = (data[off] << 8) | data[off + 1]
    qclass = (data[off + 2] << 8) | data[off + 3]
    off += 4
    if qtype == OPT:
        raise Reject(error_reply(qid, flags, FORMERR), FORMERR)
    edns, udp_size, do, version = False, 512, False, 0
    try:
        for _ in range(ar):
            name_start = off
            off = skip_name(data, off)
            if off + 10 > n:
                raise IndexError("record header runs past the end")
            rtype, rclass, ttl, rdlen = RR_FIXED.unpack_from(data, off)
            off += 10 + rdlen
            if off > n:
                raise IndexError("rdata runs past the end")
            if rtype == OPT:
                if edns or data[name_start] != 0:  # RFC 6891: one OPT, owned by the root
                    raise ValueError("bad OPT")
                edns, udp_size, do, version = True, rclass, bool(ttl & 0x8000), (ttl >> 16) & 0xFF
    except (IndexError, ValueError):
        raise Reject(error_reply(qid, flags, FORMERR), FORMERR) from None
    question = data[12:qname_end + 4]
    if version:
        reply = HEADER.pack(qid, QR | (flags & RD), 1, 0, 0, 1) + question + opt_record(do, 1)
        raise Reject(reply, BADVERS)
    key = data[12:qname_end].lower() + data[qname_end:qname_end + 4]
    return Query(qid, flags, bytes(question), key, qname_end - 12, qtype, qclass, edns, udp_size, do)


@dataclass(slots=True)
class Entry:
    """A rendered answer minus header and question, with its truncation points.

    ``cuts[i]`` is the tail length after record i+1 and ``counts[i]`` the section counts of
    that prefix. ``ttls`` (forwarded answers only) are (offset in tail, original TTL) pairs
    rewritten on the way out so that a cached answer's TTLs count down, as CoreDNS's do.
    """

    flags: int  # QR, AA, RA, rcode: RD and CD are the client's
    tail: bytes
    an: int
    ns: int
    ar: int
    cuts: list[int]
    counts: list[tuple[int, int, int]]
    expires: float = 0.0  # 0: until the cluster state changes
    born: float = 0.0
    ttls: tuple[tuple[int, int], ...] = ()

    @property
    def rcode(self) -> int:
        return self.flags & 0xF


def reply(q: Query, e: Entry, limit: int, now: float = 0.0) -> bytes:
    """The answer to ``q`` from ``e``, cut to ``limit`` bytes (TC when answers had to go)."""
    opt = opt_record(q.do) if q.edns else b""
    flags = e.flags | (q.flags & (RD | CD))
    tail = e.tail
    an, ns, ar = e.an, e.ns, e.ar
    room = limit - 12 - len(q.question) - len(opt)
    if len(tail) > room:
        i = bisect.bisect_right(e.cuts, room)
        if i:
            tail = tail[:e.cuts[i - 1]]
            an2, ns2, ar2 = e.counts[i - 1]
        else:
            tail, an2, ns2, ar2 = b"", 0, 0, 0
        if an2 < an or ns2 < ns:
            flags |= TC  # dropping additional records alone is no truncation (RFC 2181 9)
        an, ns, ar = an2, ns2, ar2
    if e.ttls and now:
        # As CoreDNS's cache: TTLs count down, and never promise more than the cache keeps the answer.
        age, left = int(now - e.born), max(0, int(e.expires - now))
        buf = bytearray(tail)
        size = len(buf)
        for off, ttl in e.ttls:
            if off + 4 <= size:
                U32.pack_into(buf, off, max(0, min(ttl - age, left)))
        tail = bytes(buf)
    return HEADER.pack(q.id, flags, 1, an, ns, ar + (1 if opt else 0)) + q.question + tail + opt


def render(qname: dns.name.Name, qtype: int, rcode: int, answer: Sequence[RR], authority: Sequence[RR] = (),
           additional: Sequence[RR] = (), *, authoritative: bool = True, expires: float = 0.0) -> Entry:
    """Render records once with dnspython (compression included) into a reusable :class:`Entry`."""
    f = io.BytesIO()
    f.write(bytes(12))
    compress: dict[dns.name.Name, int] = {}
    qname.to_wire(f, compress)
    f.write(U16.pack(qtype) + U16.pack(CLASS_IN))
    start = f.tell()
    cuts: list[int] = []
    counts: list[tuple[int, int, int]] = []
    an = ns = ar = 0
    for section, rrs in enumerate((answer, authority, additional)):
        for owner, ttl, rd in rrs:
            owner.to_wire(f, compress)
            f.write(RR_FIXED.pack(rd.rdtype, rd.rdclass, ttl, 0))
            at = f.tell()
            rd.to_wire(f, compress)
            end = f.tell()
            f.seek(at - 2)
            f.write(U16.pack(end - at))
            f.seek(end)
            if section == 0:
                an += 1
            elif section == 1:
                ns += 1
            else:
                ar += 1
            cuts.append(end - start)
            counts.append((an, ns, ar))
    tail = f.getvalue()[start:]
    flags = QR | RA | (AA if authoritative else 0) | rcode
    return Entry(flags, tail, an, ns, ar, cuts, counts, expires)


@dataclass(frozen=True, slots=True)
class Scanned:
    """Where things are in an upstream response (for caching it and for its TTLs)."""

    flags: int
    qd_end: int
    an: int
    ns: int
    ar: int
    records: tuple[tuple[int, int, int, int], ...]  # (start, end, type, ttl offset) per record
    min_answer_ttl: int | None
    negative_ttl: int | None  # from the authority SOA: min(its TTL, its MINIMUM)
    opt_at: int | None  # index in records of the OPT record


def scan_response(data: bytes) -> Scanned:
    """Walk a response without decoding names; raises ValueError/IndexError when malformed."""
    n = len(data)
    if n < 12:
        raise ValueError("short response")
    _, flags, qd, an, ns, ar = HEADER.unpack_from(data)
    if qd != 1:
        raise ValueError("response without exactly one question")
    off = skip_name(data, 12) + 4
    if off > n:
        raise IndexError("question runs past the end")
    qd_end = off
    records: list[tuple[int, int, int, int]] = []
    min_ttl: int | None = None
    neg: int | None = None
    opt_at: int | None = None
    for i in range(an + ns + ar):
        start = off
        off = skip_name(data, off)
        if off + 10 > n:
            raise IndexError("record header runs past the end")
        rtype, _rclass, ttl, rdlen = RR_FIXED.unpack_from(data, off)
        ttl_off = off + 4
        off += 10 + rdlen
        if off > n:
            raise IndexError("rdata runs past the end")
        records.append((start, off, rtype, ttl_off))
        if i < an:
            min_ttl = ttl if min_ttl is None else min(min_ttl, ttl)
        elif i < an + ns:
            if rtype == 6 and rdlen >= 4:  # SOA: its MINIMUM is the rdata's last 4 bytes
                minimum = U32.unpack_from(data, off - 4)[0]
                neg = min(ttl, minimum)
        elif rtype == OPT and opt_at is None:
            opt_at = i
    return Scanned(flags, qd_end, an, ns, ar, tuple(records), min_ttl, neg, opt_at)


def entry_from_response(data: bytes, scanned: Scanned, *, expires: float, born: float) -> Entry:
    """A cacheable :class:`Entry` from an upstream answer, without its OPT record (ours is added)."""
    keep = scanned.records if scanned.opt_at is None else scanned.records[:scanned.opt_at]
    q = scanned.qd_end
    end = keep[-1][1] if keep else q
    tail = data[q:end]
    cuts: list[int] = []
    counts: list[tuple[int, int, int]] = []
    ttls: list[tuple[int, int]] = []
    for i, (_, rec_end, rtype, ttl_off) in enumerate(keep):
        cuts.append(rec_end - q)
        counts.append((min(i + 1, scanned.an), max(0, min(i + 1 - scanned.an, scanned.ns)),
                       max(0, i + 1 - scanned.an - scanned.ns)))
        if rtype != OPT:
            ttls.append((ttl_off - q, U32.unpack_from(data, ttl_off)[0]))
    an, ns, ar = counts[-1] if counts else (0, 0, 0)
    flags = (scanned.flags & ~(TC | RD | CD | 0x7800)) | QR
    return Entry(flags, tail, an, ns, ar, cuts, counts, expires, born, tuple(ttls))


def header_entry(rcode: int, *, authoritative: bool = False, expires: float = 0.0) -> Entry:
    """An answer with no records (SERVFAIL, REFUSED)."""
    return Entry(QR | RA | (AA if authoritative else 0) | rcode, b"", 0, 0, 0, [], [], expires)


def name_of(labels: Iterable[str]) -> dns.name.Name:
    return dns.name.Name([lb.encode("latin-1") for lb in labels] + [b""])
