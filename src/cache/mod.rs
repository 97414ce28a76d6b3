//! On-disk caches: original content (sparse files, block map, byte budget, LRU) and thumbnails.
//! (Built by the browse issue.)
