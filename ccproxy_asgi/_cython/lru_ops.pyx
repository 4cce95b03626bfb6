# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
# cython: embedsignature=True
"""Sliding-window request history and an LRU cache, compiled.

Same API and behaviour as ``_lru_ops_py`` (whose docstring documents both); the tests hold them equal.
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.number cimport PyNumber_Index
from cpython.ref cimport PyObject
from libc.math cimport INFINITY, isnan
from libc.string cimport memcpy

from types import GenericAlias

cdef enum:
    # Smallest ring; also the size a long-idle log shrinks back to.
    _MIN_CAP = 16


cdef inline long long _int64(object value) except? -1:
    # PyNumber_Index first: a bare `long long` argument would silently truncate floats.
    return PyNumber_Index(value)


cdef struct _Entry:
    double ts
    long long tokens
    bint live


cdef class WindowLog:
    """Time-ordered ``(timestamp, tokens)`` history with running sums; see ``_lru_ops_py``."""

    # A ring of _cap (a power of two) slots; _size stored entries start at _head, oldest first.
    cdef _Entry* _buf
    cdef Py_ssize_t _cap
    cdef Py_ssize_t _head
    cdef Py_ssize_t _size
    cdef Py_ssize_t _count
    cdef long long _seq0  # handle of the entry at _head
    cdef long long _tokens
    cdef double _last  # latest timestamp added since creation or clear()

    def __cinit__(self):
        self._buf = <_Entry*>PyMem_Malloc(_MIN_CAP * sizeof(_Entry))
        if self._buf == NULL:
            raise MemoryError()
        self._cap = _MIN_CAP
        self._last = -INFINITY

    def __dealloc__(self):
        PyMem_Free(self._buf)

    @property
    def count(self):
        """Live entries stored."""
        return self._count

    @property
    def tokens(self):
        """Sum of the live entries' tokens."""
        return self._tokens

    cdef int _resize(self, Py_ssize_t cap) except -1:
        cdef _Entry* buf = <_Entry*>PyMem_Malloc(cap * sizeof(_Entry))
        if buf == NULL:
            raise MemoryError()
        cdef Py_ssize_t first = min(self._size, self._cap - self._head)
        memcpy(buf, self._buf + self._head, first * sizeof(_Entry))
        memcpy(buf + first, self._buf, (self._size - first) * sizeof(_Entry))
        PyMem_Free(self._buf)
        self._buf = buf
        self._cap = cap
        self._head = 0
        return 0

    cdef inline _Entry* _at(self, Py_ssize_t offset) noexcept:
        return &self._buf[(self._head + offset) & (self._cap - 1)]

    cdef int _drop_dead_head(self) except -1:
        # Cancelled entries at the head would only make oldest() and time_until_fits() skip them.
        while self._size > 0 and not self._buf[self._head].live:
            self._head = (self._head + 1) & (self._cap - 1)
            self._size -= 1
            self._seq0 += 1
        # Shrinking at a quarter full (growth happens at full) bounds memory by the live window
        # without resizing back and forth.
        cdef Py_ssize_t cap = self._cap
        while cap > _MIN_CAP and self._size * 4 <= cap:
            cap //= 2
        if cap != self._cap:
            self._resize(cap)
        return 0

    cdef Py_ssize_t _index(self, long long handle) noexcept:
        cdef long long offset = handle - self._seq0
        if offset < 0 or offset >= self._size:
            return -1
        cdef Py_ssize_t i = (self._head + <Py_ssize_t>offset) & (self._cap - 1)
        if not self._buf[i].live:
            return -1
        return i

    def add(self, double ts, object tokens):
        """Append an entry and return its handle."""
        cdef long long n = _int64(tokens)
        if isnan(ts):
            raise ValueError("timestamp is NaN")
        if n < 0:
            raise ValueError("tokens must be >= 0")
        if ts < self._last:
            ts = self._last
        self._last = ts
        if self._size == self._cap:
            self._resize(self._cap * 2)
        cdef _Entry* e = self._at(self._size)
        e.ts = ts
        e.tokens = n
        e.live = True
        self._size += 1
        self._count += 1
        self._tokens += n
        return self._seq0 + self._size - 1

    def prune(self, double cutoff):
        """Drop entries with ``ts <= cutoff``; return how many live entries were dropped."""
        cdef Py_ssize_t dropped = 0
        cdef Py_ssize_t mask = self._cap - 1
        cdef _Entry* e
        while self._size > 0:
            e = &self._buf[self._head]
            if not e.ts <= cutoff:
                break
            if e.live:
                dropped += 1
                self._tokens -= e.tokens
            self._head = (self._head + 1) & mask
            self._size -= 1
            self._seq0 += 1
        self._count -= dropped
        self._drop_dead_head()
        return dropped

    def adjust(self, object handle, object delta):
        """Add ``delta`` to a stored entry's tokens (not below 0); ``False`` if the entry is gone."""
        cdef Py_ssize_t i = self._index(_int64(handle))
        cdef long long d = _int64(delta)
        if i < 0:
            return False
        cdef long long old = self._buf[i].tokens
        cdef long long new = max(old + d, 0)
        self._buf[i].tokens = new
        self._tokens += new - old
        return True

    def cancel(self, object handle):
        """Forget a live entry's request and tokens; ``False`` if the entry is gone."""
        cdef Py_ssize_t i = self._index(_int64(handle))
        if i < 0:
            return False
        self._buf[i].live = False
        self._count -= 1
        self._tokens -= self._buf[i].tokens
        self._drop_dead_head()
        return True

    def oldest(self):
        """The oldest live entry as ``(ts, tokens)``, or ``None`` when empty."""
        if self._size == 0:
            return None
        cdef _Entry* e = &self._buf[self._head]
        return (e.ts, e.tokens)

    def time_until_fits(
        self,
        double now,
        double window,
        object max_count,
        object max_tokens,
        object need_tokens,
    ):
        """Seconds until an entry of ``need_tokens`` fits the limits; ``0.0`` now, ``inf`` never."""
        cdef long long need = _int64(need_tokens)
        if need < 0:
            raise ValueError("need_tokens must be >= 0")
        if isnan(now) or isnan(window) or window < 0.0:
            raise ValueError("now and window must be numbers, window >= 0")
        cdef long long limit
        cdef long long excess_count = 0
        cdef long long excess_tokens = 0
        if max_count is not None:
            limit = _int64(max_count)
            if limit < 1:
                return INFINITY
            excess_count = self._count + 1 - limit
        if max_tokens is not None:
            limit = _int64(max_tokens)
            if need > limit:
                return INFINITY
            # Subtracting first cannot overflow: 0 <= need <= limit.
            excess_tokens = (self._tokens - limit) + need
        if excess_count <= 0 and excess_tokens <= 0:
            return 0.0
        cdef double cutoff = now - window
        cdef Py_ssize_t k
        cdef _Entry* e
        for k in range(self._size):
            e = self._at(k)
            if not e.live:
                continue
            excess_count -= 1
            excess_tokens -= e.tokens
            if excess_count <= 0 and excess_tokens <= 0:
                return 0.0 if e.ts <= cutoff else e.ts - cutoff
        # Unreachable: with every entry expired, one entry of need_tokens <= max_tokens fits.
        return 0.0

    def clear(self):
        """Drop every entry; later handles still never repeat earlier ones."""
        self._seq0 += self._size
        self._size = 0
        self._head = 0
        self._count = 0
        self._tokens = 0
        self._last = -INFINITY
        self._drop_dead_head()


cdef class _Node:
    # prev/next are borrowed: the cache's dict owns every node, so the links never form reference
    # cycles and a large cache is freed by refcounting alone.
    cdef PyObject* prev
    cdef PyObject* next
    cdef object key
    cdef object value


cdef inline void _unlink(_Node node) noexcept:
    (<_Node>node.prev).next = node.next
    (<_Node>node.next).prev = node.prev


cdef class LRUCache:
    """Bounded mapping that evicts the least recently used item; see ``_lru_ops_py``."""

    cdef dict _map
    # Sentinel of a circular list: _root.next is the least, _root.prev the most recently used node.
    cdef _Node _root
    cdef readonly Py_ssize_t maxsize
    cdef readonly Py_ssize_t hits
    cdef readonly Py_ssize_t misses

    __class_getitem__ = classmethod(GenericAlias)

    def __cinit__(self, *args, **kwargs):
        # Here rather than in __init__ so that no method can ever see a missing sentinel.
        self._map = {}
        self._root = _Node.__new__(_Node)
        self._root.prev = <PyObject*>self._root
        self._root.next = <PyObject*>self._root

    def __init__(self, object maxsize):
        cdef long long size = _int64(maxsize)
        if size < 0:
            raise ValueError("maxsize must be >= 0")
        self.maxsize = <Py_ssize_t>size

    cdef inline void _append(self, _Node node) noexcept:
        node.prev = self._root.prev
        node.next = <PyObject*>self._root
        (<_Node>self._root.prev).next = <PyObject*>node
        self._root.prev = <PyObject*>node

    def get(self, key, default=None):
        """The value for ``key`` (now most recently used), or ``default``."""
        found = self._map.get(key)
        if found is None:
            self.misses += 1
            return default
        cdef _Node node = <_Node>found
        _unlink(node)
        self._append(node)
        self.hits += 1
        return node.value

    def put(self, key, value):
        """Store ``value`` under ``key`` as most recently used, evicting the least recent if full."""
        found = self._map.get(key)
        cdef _Node node
        if found is not None:
            node = <_Node>found
            node.value = value
            _unlink(node)
            self._append(node)
            return
        if self.maxsize == 0:
            return
        if len(self._map) >= self.maxsize:
            # Recycle the evicted node: a full cache then allocates nothing per insert.
            node = <_Node>self._root.next
            _unlink(node)
            del self._map[node.key]
        else:
            node = _Node.__new__(_Node)
        node.key = key
        node.value = value
        self._map[key] = node
        self._append(node)

    def keys(self):
        """Keys from least to most recently used."""
        cdef list out = []
        cdef PyObject* p = self._root.next
        while p != <PyObject*>self._root:
            out.append((<_Node>p).key)
            p = (<_Node>p).next
        return out

    def clear(self):
        """Drop every item and reset the counters."""
        self._map.clear()
        self._root.prev = <PyObject*>self._root
        self._root.next = <PyObject*>self._root
        self.hits = 0
        self.misses = 0

    def __len__(self):
        return len(self._map)

    def __contains__(self, key):
        return key in self._map


__all__ = ["LRUCache", "WindowLog"]
