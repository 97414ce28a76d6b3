# galleryfs for Nautilus (nautilus-python), installed by `galleryfs desktop install`;
# `galleryfs desktop uninstall` removes it.
#
# - an emblem per file of a galleryfs mount for its state (user.galleryfs.state: cloud, cached, pinned, dirty,
#   conflict) and a "OneDrive" column in the list view;
# - "Keep on this device", "Free up space" and "Show sync status" in the context menu of files and folders inside
#   a galleryfs mount, running `galleryfs desktop run pin|free|status PATH...`.
import os

from gi.repository import GLib, GObject, Nautilus

GALLERYFS = @GALLERYFS@

STATE_XATTR = "user.galleryfs.state"
ID_XATTR = "user.galleryfs.id"
LABELS = {
    "cloud": "Available online",
    "cached": "On this device",
    "pinned": "Always on this device",
    "dirty": "Waiting to upload",
    "conflict": "Conflict",
}
ACTIONS = [
    ("keep", "Keep on this device", "pin"),
    ("free", "Free up space", "free"),
    ("status", "Show sync status", "status"),
]


def local_path(info):
    if info.get_uri_scheme() != "file":
        return None
    location = info.get_location()
    return location.get_path() if location is not None else None


def xattr(path, name):
    try:
        return os.getxattr(path, name).decode("utf-8", "replace")
    except OSError:
        return None


def run_action(verb, infos):
    paths = [p for p in (local_path(i) for i in infos) if p]
    if not paths:
        return
    argv = [GALLERYFS, "desktop", "run", verb] + paths
    flags = GLib.SpawnFlags.DO_NOT_REAP_CHILD
    pid, _, _, _ = GLib.spawn_async(argv, flags=flags)

    def done(_pid, _status):
        GLib.spawn_close_pid(_pid)
        for info in infos:
            info.invalidate_extension_info()

    GLib.child_watch_add(GLib.PRIORITY_DEFAULT, pid, done)


class GalleryfsExtension(GObject.GObject, Nautilus.InfoProvider, Nautilus.MenuProvider, Nautilus.ColumnProvider):
    def update_file_info(self, info):
        path = local_path(info)
        if not path:
            return
        state = xattr(path, STATE_XATTR)
        if state is None:
            return
        state = state.strip()
        info.add_string_attribute("galleryfs_state", LABELS.get(state, state))
        if state in LABELS:
            info.add_emblem("galleryfs-" + state)

    # The column's name has no "::": Nautilus 43 hangs loading a list view that shows a column named with one.
    def get_columns(self):
        return [
            Nautilus.Column(
                name="galleryfs_state",
                attribute="galleryfs_state",
                label="OneDrive",
                description="Where the file is kept (galleryfs)",
            )
        ]

    # nautilus-python 4 calls get_file_items(files); older versions get_file_items(window, files).
    def get_file_items(self, *args):
        infos = args[-1]
        if not infos:
            return []
        for info in infos:
            path = local_path(info)
            if not path or xattr(path, ID_XATTR) is None:
                return []
        items = []
        for key, label, verb in ACTIONS:
            item = Nautilus.MenuItem(name="GalleryfsExtension::" + key, label=label, tip=label)
            item.connect("activate", lambda _item, verb=verb, infos=infos: run_action(verb, infos))
            items.append(item)
        return items
