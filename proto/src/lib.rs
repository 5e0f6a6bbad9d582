//! The CutX contracts: generated messages, clients and servers for package `cutx.v1`, and the
//! encoded descriptor set (with `google.api.http` options and imports) the gateway and
//! reflection are built from.

pub mod cutx {
    pub mod v1 {
        #![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]
        include!(concat!(env!("OUT_DIR"), "/cutx.v1.rs"));
    }
}

pub use cutx::v1 as pb;

/// The encoded `FileDescriptorSet` of every `cutx.v1` file and everything it imports.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/cutx_descriptor.bin"));

/// The services clients may call through the gateway.
pub const PUBLIC_SERVICES: &[&str] = &[
    pb::auth_service_server::SERVICE_NAME,
    pb::job_service_server::SERVICE_NAME,
    pb::project_service_server::SERVICE_NAME,
    pb::billing_service_server::SERVICE_NAME,
];

/// Served only by `cutx dev`.
pub const DEV_SERVICES: &[&str] = &[pb::dev_mailbox_service_server::SERVICE_NAME];
