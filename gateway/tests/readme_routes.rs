//! The README's table of REST routes is the one the descriptors make.

use std::collections::HashSet;

use cutx_gateway::routes::RouteTable;
use cutx_gateway::{openapi, route_table};
use prost_reflect::DescriptorPool;

#[test]
fn the_readme_lists_every_rest_route_as_the_descriptors_declare_it() {
    let pool = DescriptorPool::decode(cutx_proto::FILE_DESCRIPTOR_SET).unwrap();
    let exposed: HashSet<String> = cutx_proto::PUBLIC_SERVICES.iter().map(|s| s.to_string()).collect();
    let table = RouteTable::from_pool(&pool, &exposed).unwrap();
    let generated = route_table::markdown(&openapi::document(&table));
    assert_eq!(generated.lines().count(), 2 + table.routes().len(), "one row per route");

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let start = readme.find(route_table::BEGIN).expect("the README has the begin marker") + route_table::BEGIN.len();
    let end = readme.find(route_table::END).expect("the README has the end marker");
    let written = readme[start..end].trim();
    if written == generated.trim() {
        return;
    }
    if std::env::var("CUTX_BLESS").is_ok_and(|v| v == "1") {
        let updated = format!("{}\n{}{}", &readme[..start], generated, &readme[end..]);
        std::fs::write(path, updated).unwrap();
        return;
    }
    panic!(
        "README.md's route table is not what the descriptors declare; rewrite it with \
         CUTX_BLESS=1 cargo test -p cutx-gateway --test readme_routes\n\nwanted:\n{generated}"
    );
}
