//! The thin `fuser` adapter: each callback hands its request to the filesystem core and maps the answer to a
//! reply. (Built by the browse issue.)
