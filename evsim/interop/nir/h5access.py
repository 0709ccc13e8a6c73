"""What evsim reads from an HDF5 file, and how: nothing outside the file, and sizes before reads.

A NIR file comes from strangers, and HDF5 can point anywhere: an external link opens another
file, external storage and virtual datasets take their bytes from other files, a soft link can
name any object, and a few kilobytes of gzip can declare gigabytes. So every object is reached
through :meth:`H5Access.child`, which inspects the link before following it (external links,
soft links leaving their group, user-defined links: refused), and every dataset is checked by
:meth:`H5Access.read` before a byte of its data is read: no external storage, not virtual, only
the filters NIR writes (gzip, shuffle), a number or text dtype (no object references, no
variable-length sequences, no compound types), and a declared size within what is left of
MAX_MODEL_BYTES for the whole file. Variable-length strings live uncompressed in the file's heap,
so the file size, checked first, bounds them.
"""

from __future__ import annotations

import math
import posixpath

import numpy as np

from evsim.errors import ModelError
from evsim.model.file import MAX_MODEL_BYTES

ALLOWED_FILTERS = {1: "gzip", 2: "shuffle"}  # h5z.FILTER_DEFLATE, h5z.FILTER_SHUFFLE: what nir.write uses
MAX_SOFT_HOPS = 8
NUMBER_KINDS = "biuf"


class H5Access:
    """Checked access to one open h5py file; ``budget`` is the bytes its datasets may still declare."""

    def __init__(self, h5py, budget: int = MAX_MODEL_BYTES):
        self.h5py = h5py
        self.budget = budget

    def names(self, group, limit: int, what: str) -> list[str]:
        """The link names of ``group`` (none followed), at most ``limit`` of them."""
        count = len(group)
        if count > limit:
            raise ModelError(f"{group.name} holds {count} {what}; evsim reads at most {limit}")
        return list(group)  # link names: iterating follows no link

    def child(self, group, name: str, hops: int = 0):
        """The object linked as ``name`` in ``group``, or None; ModelError for a link that leaves the file or the group."""
        h5l = self.h5py.h5l
        key = name.encode("utf-8")
        if "/" in name or name in (".", "..") or not group.id.links.exists(key):
            return None
        kind = group.id.links.get_info(key).type
        where = f"{group.name.rstrip('/')}/{name}"
        if kind == h5l.TYPE_EXTERNAL:
            filename, target = (v.decode("utf-8", "replace") for v in group.id.links.get_val(key))
            raise ModelError(f"{where} is an external link to {filename}:{target}; evsim reads nothing outside the file")
        if kind == h5l.TYPE_SOFT:
            target = group.id.links.get_val(key).decode("utf-8", "replace")
            resolved = posixpath.normpath(posixpath.join(group.name, target))
            sibling = posixpath.relpath(resolved, group.name) if resolved.startswith(group.name) else ""
            if not sibling or "/" in sibling or sibling.startswith(".") or hops >= MAX_SOFT_HOPS:
                raise ModelError(f"{where} is a soft link to {target}, outside its group; evsim follows links "
                                 "within a group only")
            return self.child(group, sibling, hops + 1)
        if kind != h5l.TYPE_HARD:
            raise ModelError(f"{where} is a user-defined link; evsim reads plain HDF5 objects only")
        return group[name]

    def group(self, parent, name: str):
        """The group ``name`` of ``parent``; ModelError if it is missing or not a group."""
        obj = self.child(parent, name)
        if not isinstance(obj, self.h5py.Group):
            raise ModelError(f"{parent.name.rstrip('/')}/{name} is not a group")
        return obj

    def dataset(self, parent, name: str):
        obj = self.child(parent, name)
        if not isinstance(obj, self.h5py.Dataset):
            raise ModelError(f"{parent.name.rstrip('/')}/{name} is not a dataset")
        return obj

    def read(self, dataset, text: bool | None = None):
        """A checked dataset's value: a str for text, else a numpy array. ``text`` True or False
        requires that kind; None takes either (a node parameter may be a padding like 'same')."""
        is_text = self.check(dataset)
        if text is not None and is_text != text:
            raise ModelError(f"{dataset.name} holds {'numbers' if is_text is False else 'text'}, expected "
                             f"{'text' if text else 'numbers'}")
        if is_text:
            if dataset.shape != ():
                raise ModelError(f"{dataset.name} is an array of text of shape {list(dataset.shape)}; "
                                 "evsim reads single strings")
            value = dataset[()]
            return value.decode("utf-8") if isinstance(value, bytes) else str(value)
        return np.asarray(dataset[()])

    def check(self, dataset) -> bool:
        """Refuse, before any read, what evsim does not read (module docstring); whether it holds text."""
        h5py = self.h5py
        where = dataset.name
        if dataset.is_virtual:
            raise ModelError(f"{where} is a virtual dataset (its data lives in other datasets or files); "
                             "evsim reads nothing outside the file")
        plist = dataset.id.get_create_plist()
        if plist.get_external_count():
            raise ModelError(f"{where} is stored in another file (HDF5 external storage); evsim reads nothing "
                             "outside the file")
        for i in range(plist.get_nfilters()):
            code, _, _, name = plist.get_filter(i)
            if code not in ALLOWED_FILTERS:
                raise ModelError(f"{where} uses the HDF5 filter {name.decode('utf-8', 'replace') or code} "
                                 f"(id {code}); evsim reads {', '.join(ALLOWED_FILTERS.values())} or none, "
                                 "what NIR writes")
        if dataset.shape is None:
            raise ModelError(f"{where} is an empty dataspace (no value)")
        dtype = dataset.dtype
        is_text = h5py.check_string_dtype(dtype) is not None
        if not is_text and (dtype.kind not in NUMBER_KINDS or dtype.fields is not None or dtype.subdtype is not None):
            raise ModelError(f"{where} has dtype {_describe(dtype, h5py)}; evsim reads numbers and text only")
        self.charge(where, math.prod(dataset.shape) * dtype.itemsize)
        return is_text

    def charge(self, where: str, nbytes: int) -> None:
        if nbytes > self.budget:
            raise ModelError(f"{where} declares {nbytes} bytes, more than the {self.budget} left of the "
                             f"{MAX_MODEL_BYTES} evsim reads from one model file (MAX_MODEL_BYTES)")
        self.budget -= nbytes


def _describe(dtype, h5py) -> str:
    if h5py.check_ref_dtype(dtype) is not None:
        return "object reference"
    if h5py.check_vlen_dtype(dtype) is not None:
        return f"variable-length sequence of {h5py.check_vlen_dtype(dtype)}"
    if dtype.fields is not None:
        return "compound"
    return str(dtype)
