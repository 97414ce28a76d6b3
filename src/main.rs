fn main() {
    std::process::exit(galleryfs::cli::main());
}
