//! What reflection may describe: the exposed services and only what they reach.
//!
//! Listing only the exposed service names is not enough, since reflection answers
//! `file_containing_symbol` for anything in the files it was given, so an internal service and
//! the messages only it uses would still be one `grpcurl describe` away. So reflection gets its
//! own descriptor set, cut down from the whole one:
//!
//! - a file is kept if an exposed service or a type they reach is defined in it, if a kept file
//!   imports it (clients need every import to build a descriptor), or if it defines no service
//!   and nothing imports it (the error details, put in the set to be described on their own);
//! - in a kept file, services that are not exposed are dropped, and so are top-level messages
//!   and enums nothing kept reaches, through method inputs and outputs, field types (a nested
//!   type keeps its whole top-level message) and the extensions of kept files (the
//!   `google.api.http` option keeps `HttpRule`);
//! - source code info (comments) follows the elements that stay.
//!
//! Files are edited as messages that keep unknown fields, so custom options such as the
//! `google.api.http` rules survive the round trip.

use std::collections::HashSet;

use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, EnumDescriptor, FileDescriptor, Kind, MessageDescriptor, ReflectMessage, Value,
};

/// The encoded `FileDescriptorSet` reflection describes, for the services in `exposed`.
pub fn public_descriptor_set(pool: &DescriptorPool, exposed: &HashSet<String>) -> anyhow::Result<Vec<u8>> {
    let reached = Reached::from_services(pool, exposed);
    let set_descriptor = prost_types::FileDescriptorSet::default().descriptor();
    let mut set = DynamicMessage::decode(set_descriptor, pool.encode_to_vec().as_slice())?;
    let Some(Value::List(files)) = set.get_field_by_name_mut("file") else {
        anyhow::bail!("a FileDescriptorSet has a repeated `file`");
    };
    files.retain(|file| file.as_message().is_some_and(|file| reached.files.contains(&text(file, "name"))));
    for file in files.iter_mut().filter_map(Value::as_message_mut) {
        let package = text(file, "package");
        let mut kept = Vec::new();
        for (field, number, wanted) in [
            ("message_type", MESSAGE_TYPE, &reached.types),
            ("enum_type", ENUM_TYPE, &reached.types),
            ("service", SERVICE, exposed),
        ] {
            let Some(Value::List(elements)) = file.get_field_by_name_mut(field) else { continue };
            let keep: Vec<bool> = elements
                .iter()
                .map(|element| {
                    element.as_message().is_some_and(|e| wanted.contains(&qualified(&package, &text(e, "name"))))
                })
                .collect();
            let mut flags = keep.iter();
            elements.retain(|_| *flags.next().expect("one flag per element"));
            kept.push((number, keep));
        }
        follow_source_info(file, &kept)?;
    }
    Ok(set.encode_to_vec())
}

/// `FileDescriptorProto` field numbers, as source code info paths name them.
const MESSAGE_TYPE: i32 = 4;
const ENUM_TYPE: i32 = 5;
const SERVICE: i32 = 6;

fn text(message: &DynamicMessage, field: &str) -> String {
    message.get_field_by_name(field).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn qualified(package: &str, name: &str) -> String {
    if package.is_empty() { name.to_string() } else { format!("{package}.{name}") }
}

/// Drops the locations of removed elements and renumbers the rest. `kept` holds, per list
/// field, whether each of its elements stayed.
fn follow_source_info(file: &mut DynamicMessage, kept: &[(i32, Vec<bool>)]) -> anyhow::Result<()> {
    if !file.has_field_by_name("source_code_info") {
        return Ok(());
    }
    let Some(Value::Message(info)) = file.get_field_by_name("source_code_info").map(|v| v.into_owned()) else {
        return Ok(());
    };
    let mut info: prost_types::SourceCodeInfo = info.transcode_to()?;
    info.location.retain_mut(|location| {
        let [field, index, ..] = location.path[..] else { return true };
        let Some((_, keep)) = kept.iter().find(|(number, _)| *number == field) else { return true };
        let Some(true) = keep.get(index as usize) else { return false };
        location.path[1] = keep[..index as usize].iter().filter(|k| **k).count() as i32;
        true
    });
    let mut encoded = DynamicMessage::new(prost_types::SourceCodeInfo::default().descriptor());
    encoded.transcode_from(&info)?;
    file.set_field_by_name("source_code_info", Value::Message(encoded));
    Ok(())
}

/// The files and top-level types (full names) the exposed services reach.
#[derive(Default)]
struct Reached {
    files: HashSet<String>,
    types: HashSet<String>,
}

enum Item {
    File(FileDescriptor),
    Message(MessageDescriptor),
    Enum(EnumDescriptor),
}

impl Reached {
    fn from_services(pool: &DescriptorPool, exposed: &HashSet<String>) -> Reached {
        let mut reached = Reached::default();
        let mut todo: Vec<Item> = Vec::new();
        for service in pool.services().filter(|s| exposed.contains(s.full_name())) {
            todo.push(Item::File(service.parent_file()));
            for method in service.methods() {
                todo.push(Item::Message(method.input()));
                todo.push(Item::Message(method.output()));
            }
        }
        let imported: HashSet<String> =
            pool.files().flat_map(|f| f.dependencies().map(|d| d.name().to_string()).collect::<Vec<_>>()).collect();
        for file in pool.files().filter(|f| f.services().len() == 0 && !imported.contains(f.name())) {
            todo.extend(file.messages().map(Item::Message));
            todo.extend(file.enums().map(Item::Enum));
            todo.push(Item::File(file));
        }
        while let Some(item) = todo.pop() {
            match item {
                Item::File(file) => {
                    if reached.files.insert(file.name().to_string()) {
                        todo.extend(file.dependencies().map(Item::File));
                        for extension in file.extensions() {
                            todo.push(Item::Message(extension.containing_message()));
                            todo.extend(item_of(extension.kind()));
                        }
                    }
                }
                Item::Message(message) => {
                    let top = outermost(message);
                    if reached.types.insert(top.full_name().to_string()) {
                        todo.push(Item::File(top.parent_file()));
                        reached.reach_inside(&top, &mut todo);
                    }
                }
                Item::Enum(e) => match e.parent_message() {
                    Some(parent) => todo.push(Item::Message(parent)),
                    None => {
                        if reached.types.insert(e.full_name().to_string()) {
                            todo.push(Item::File(e.parent_file()));
                        }
                    }
                },
            }
        }
        reached
    }

    /// Every type a message and its nested types refer to, by field or nested extension.
    fn reach_inside(&self, message: &MessageDescriptor, todo: &mut Vec<Item>) {
        todo.extend(message.fields().filter_map(|field| item_of(field.kind())));
        for extension in message.child_extensions() {
            todo.push(Item::Message(extension.containing_message()));
            todo.extend(item_of(extension.kind()));
        }
        for nested in message.child_messages() {
            self.reach_inside(&nested, todo);
        }
    }
}

fn item_of(kind: Kind) -> Option<Item> {
    match kind {
        Kind::Message(message) => Some(Item::Message(message)),
        Kind::Enum(e) => Some(Item::Enum(e)),
        _ => None,
    }
}

fn outermost(message: MessageDescriptor) -> MessageDescriptor {
    match message.parent_message() {
        Some(parent) => outermost(parent),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public_pool(exposed: &[&str]) -> DescriptorPool {
        let pool = DescriptorPool::decode(cutx_proto::FILE_DESCRIPTOR_SET).unwrap();
        let exposed = exposed.iter().map(|s| s.to_string()).collect();
        DescriptorPool::decode(public_descriptor_set(&pool, &exposed).unwrap().as_slice()).unwrap()
    }

    #[test]
    fn the_public_set_holds_the_exposed_services_and_no_other() {
        let public = public_pool(cutx_proto::PUBLIC_SERVICES);
        let mut services: Vec<_> = public.services().map(|s| s.full_name().to_string()).collect();
        services.sort();
        let mut want: Vec<_> = cutx_proto::PUBLIC_SERVICES.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(services, want);
    }

    #[test]
    fn internal_services_and_what_only_they_use_are_gone() {
        let public = public_pool(cutx_proto::PUBLIC_SERVICES);
        let with_dev = public_pool(&[cutx_proto::PUBLIC_SERVICES, cutx_proto::DEV_SERVICES].concat());
        // (symbol, in the public set, in the set with the dev services)
        let table = [
            ("cutx.v1.JobInternalService", false, false),
            ("cutx.v1.BillingInternalService", false, false),
            ("cutx.v1.StartJobRequest", false, false),
            ("cutx.v1.StoredOutput", false, false),
            ("cutx.v1.DevMailboxService", false, true),
            ("cutx.v1.JobService", true, true),
            ("cutx.v1.GetBalanceRequest", true, true),
            ("cutx.v1.Job", true, true),
            ("cutx.v1.JobStatus", true, true),
            ("google.protobuf.Timestamp", true, true),
        ];
        for (symbol, in_public, in_dev) in table {
            for (pool, want, which) in [(&public, in_public, "public"), (&with_dev, in_dev, "dev")] {
                let found = pool.get_service_by_name(symbol).is_some()
                    || pool.get_message_by_name(symbol).is_some()
                    || pool.get_enum_by_name(symbol).is_some();
                assert_eq!(found, want, "{symbol} in the {which} set");
            }
        }
        let files: Vec<_> = public.files().map(|f| f.name().to_string()).collect();
        assert!(!files.iter().any(|f| f.contains("internal")), "{files:?}");
    }

    #[test]
    fn the_public_set_keeps_the_http_rules_and_the_error_details() {
        let public = public_pool(cutx_proto::PUBLIC_SERVICES);
        let http = public.get_extension_by_name("google.api.http").expect("google/api/annotations.proto is kept");
        let with_rules = public
            .services()
            .flat_map(|s| s.methods().collect::<Vec<_>>())
            .filter(|m| m.options().has_extension(&http))
            .count();
        assert!(with_rules > 0, "the google.api.http options survive the round trip");
        for detail in ["google.rpc.BadRequest", "google.rpc.ErrorInfo", "google.rpc.Status"] {
            assert!(public.get_message_by_name(detail).is_some(), "{detail}");
        }
    }

    #[test]
    fn comments_stay_with_the_elements_they_describe() {
        let public = public_pool(cutx_proto::PUBLIC_SERVICES);
        let whole = DescriptorPool::decode(cutx_proto::FILE_DESCRIPTOR_SET).unwrap();
        let comment = |pool: &DescriptorPool, name: &str| {
            let message = pool.get_message_by_name(name).unwrap();
            message.parent_file().file_descriptor_proto().source_code_info.as_ref().and_then(|info| {
                let path = message.path();
                info.location.iter().find(|l| l.path == path).map(|l| l.leading_comments().to_string())
            })
        };
        for message in public.all_messages().filter(|m| m.parent_message().is_none()) {
            assert_eq!(
                comment(&public, message.full_name()),
                comment(&whole, message.full_name()),
                "{}",
                message.full_name()
            );
        }
    }
}
