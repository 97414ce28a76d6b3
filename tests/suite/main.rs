//! The integration tests, one binary: each file of this directory is a module (run one with
//! `cargo test --test suite FILE::`, e.g. `cargo test --test suite cli_mount::`). The support modules
//! (`common`, `*_support`) are shared by all of them.

#[macro_use]
mod common;
mod edits_support;
mod fault_support;
mod reliability_support;

mod auth_flows;
mod camera_roll_mount;
mod cli_files;
mod cli_mount;
mod cli_newcomer;
mod content_cache;
mod desktop_actions;
mod edits_bulk_import;
mod edits_core;
mod edits_model;
mod edits_mount;
mod edits_send_ahead;
mod emulator_conformance;
mod emulator_faults;
mod emulator_identity;
mod fuse_adapter_passthrough;
mod gallery_fs;
mod gallery_roots;
mod graph_client_emulator;
mod graph_client_http;
mod hostile_input;
mod login_emulator;
mod module_layers;
mod mount_browse;
mod mount_cached_reads;
mod mount_correctness;
mod mount_header_scans;
mod mount_live_views;
mod mount_notifications;
mod mount_rw_passthrough;
mod mount_timeline;
mod notifications_channel;
mod package_deb;
mod reliability_concurrency;
mod reliability_crash;
mod reliability_faults;
mod reliability_secrets;
mod reliability_soak;
mod store_delta;
mod sync_engine;
mod sync_first_listing;
mod thumbnails_freedesktop;
