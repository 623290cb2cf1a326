//! Manual interop helper: drives the image store against a scratch root, e.g. to
//! exchange archives with a real docker.
//!   image_tool ROOT load FILE | save FILE NAME... | import FILE TAG | ls | inspect NAME | mount NAME DIR | umount DIR

use berth_image::ImageStore;
use berth_store::{BlobStore, Db};
use std::collections::HashMap;
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root, cmd, rest @ ..] = args.as_slice() else {
        return Err("usage: image_tool ROOT CMD ARGS...".into());
    };
    let root = std::path::Path::new(root);
    std::fs::create_dir_all(root)?;
    let db = Arc::new(Db::open(&root.join("state.db"))?);
    let blobs = Arc::new(BlobStore::open(root)?);
    let store = ImageStore::open(root, db, blobs)?;
    match (cmd.as_str(), rest) {
        ("load", [file]) => {
            for m in store.load(&mut std::fs::File::open(file)?)? {
                println!("{m}");
            }
        }
        ("save", [file, names @ ..]) => store.save(names, &mut std::fs::File::create(file)?)?,
        ("import", [file, tag]) => println!(
            "{}",
            store.import(&mut std::fs::File::open(file)?, &[], None, Some(tag))?
        ),
        ("ls", []) => println!(
            "{}",
            serde_json::to_string_pretty(&store.list(true, &HashMap::new())?)?
        ),
        ("inspect", [name]) => println!("{}", serde_json::to_string_pretty(&store.inspect(name)?)?),
        ("history", [name]) => println!("{}", serde_json::to_string_pretty(&store.history(name)?)?),
        ("mount", [name, dir]) => println!(
            "{}",
            store
                .mount_rootfs(name, std::path::Path::new(dir))?
                .display()
        ),
        ("umount", [dir]) => ImageStore::unmount_rootfs(std::path::Path::new(dir))?,
        _ => return Err(format!("unknown command {cmd} {rest:?}").into()),
    }
    Ok(())
}
