//! Every `samenop.v1` method as the wire sees it: read from the server's own
//! descriptor set (so a method added later is in every test built on this
//! without anyone adding it), requests built field by field from the
//! descriptors, and calls made with raw bytes over a real connection.

use std::{collections::HashSet, time::SystemTime};

use prost::{
    Message as _,
    bytes::{Buf, BufMut},
};
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value,
};
use tonic::{
    Code, Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::http::uri::PathAndQuery,
    transport::Channel,
};
use uuid::Uuid;

/// One method of `samenop.v1`.
#[derive(Clone)]
pub(crate) struct Method {
    /// "Service/Method", without the package.
    pub(crate) name: String,
    /// Its request message.
    pub(crate) input: MessageDescriptor,
    /// Whether the caller streams.
    pub(crate) client_streaming: bool,
    /// Whether the server streams.
    pub(crate) server_streaming: bool,
}

impl Method {
    /// Whether the request has a field `name`, at any depth.
    pub(crate) fn has_field(&self, name: &str) -> bool {
        fn walk(desc: &MessageDescriptor, name: &str, depth: usize) -> bool {
            desc.fields().any(|f| {
                f.name() == name
                    || matches!(f.kind(), Kind::Message(m) if depth < 4 && walk(&m, name, depth + 1))
            })
        }
        walk(&self.input, name, 0)
    }
}

/// Every method of every `samenop.v1` service the server describes.
pub(crate) fn methods() -> Vec<Method> {
    let pool = DescriptorPool::decode(samenop_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let mut all = Vec::new();
    for service in pool.services() {
        if service.package_name() != "samenop.v1" {
            continue;
        }
        for method in service.methods() {
            all.push(Method {
                name: format!("{}/{}", service.name(), method.name()),
                input: method.input(),
                client_streaming: method.is_client_streaming(),
                server_streaming: method.is_server_streaming(),
            });
        }
    }
    assert!(all.len() >= 39, "the descriptor set lists every method");
    all
}

/// What a request is filled with: the ids it names and the bytes it
/// carries. Field names decide which value goes where.
#[derive(Debug, Clone)]
pub(crate) struct Values {
    /// `family_id`, `confirm_family_id`.
    pub(crate) family: Uuid,
    /// The family's members: a parent (given_by) and a child (concerned).
    pub(crate) members: [Uuid; 2],
    /// `consult_id`.
    pub(crate) consult: Uuid,
    /// `consent_id`.
    pub(crate) consent: Uuid,
    /// `attachment_id`.
    pub(crate) attachment: Uuid,
    /// `device_id`.
    pub(crate) device: Uuid,
    /// `professional_id`, `specialist_id`, `new_contact_person_id`.
    pub(crate) professional: Uuid,
    /// `mls_message`: an application message of the consult's current epoch.
    pub(crate) mls_message: Vec<u8>,
    /// `commit`: a commit of the consult's thread.
    pub(crate) commit: Vec<u8>,
    /// `epoch`: the thread's current epoch.
    pub(crate) epoch: u64,
    /// The server's now, for times.
    pub(crate) now: SystemTime,
}

impl Values {
    /// The same values with every id that names the family or something of
    /// it replaced by one that exists nowhere. Professionals and devices are
    /// in the open directory and stay.
    pub(crate) fn unknown(&self) -> Values {
        Values {
            family: Uuid::new_v4(),
            members: [Uuid::new_v4(), Uuid::new_v4()],
            consult: Uuid::now_v7(),
            consent: Uuid::now_v7(),
            attachment: Uuid::now_v7(),
            ..self.clone()
        }
    }

    /// The ids [`Values::unknown`] replaces, as they appear in text.
    pub(crate) fn probed(&self) -> Vec<String> {
        [
            self.family,
            self.members[0],
            self.members[1],
            self.consult,
            self.consent,
            self.attachment,
        ]
        .iter()
        .map(Uuid::to_string)
        .collect()
    }
}

/// The encoded request of `method` filled with `values`.
pub(crate) fn request(method: &Method, values: &Values) -> Vec<u8> {
    fill(&method.input, values, 0).encode_to_vec()
}

fn fill(desc: &MessageDescriptor, values: &Values, depth: usize) -> DynamicMessage {
    let mut message = DynamicMessage::new(desc.clone());
    let mut oneofs = HashSet::new();
    for field in desc.fields() {
        // One member of each oneof: the first.
        if let Some(oneof) = field.containing_oneof()
            && !oneofs.insert(oneof.name().to_owned())
        {
            continue;
        }
        if let Some(value) = value_for(&field, values, depth) {
            message.set_field(&field, value);
        }
    }
    message
}

fn value_for(field: &FieldDescriptor, values: &Values, depth: usize) -> Option<Value> {
    let name = field.name();
    let single = match field.kind() {
        Kind::String => Value::String(text_for(name, values)?),
        Kind::Bytes => Value::Bytes(bytes_for(name, values)?.into()),
        Kind::Enum(e) => {
            // The first value, but where a field asks for more: an
            // expertise is the consults' (a violence type), a listing by
            // family lists one's own, a parent is an adult.
            let wanted = match name {
                "domain" => "_VIOLENCE",
                "scope" => "_OWNED",
                "age_band" => "_FROM_16",
                _ => "",
            };
            let value = if wanted.is_empty() {
                e.values().find(|v| v.number() == 1)?
            } else {
                e.values().find(|v| v.name().ends_with(wanted))?
            };
            Value::EnumNumber(value.number())
        }
        Kind::Message(m) if m.full_name() == "google.protobuf.Timestamp" => {
            Value::Message(timestamp(&m, name, values.now))
        }
        // A member is described by age band; a birth month is a child's.
        Kind::Message(_) if name == "birth_month" => return None,
        Kind::Message(m) if depth < 4 => Value::Message(fill(&m, values, depth + 1)),
        Kind::Uint64 => Value::U64(number_for(name, values)?),
        Kind::Uint32 => Value::U32(u32::try_from(number_for(name, values)?).ok()?),
        _ => return None,
    };
    if !field.is_list() {
        return Some(single);
    }
    let skipped = ["welcomes", "key_packages", "states", "organisation_oins"];
    (!skipped.contains(&name)).then(|| Value::List(vec![single]))
}

fn text_for(name: &str, v: &Values) -> Option<String> {
    let id = |id: &Uuid| Some(id.to_string());
    match name {
        "member_id" | "page_token" | "cursor" | "justification" => None,
        "given_by_member_ids" => id(&v.members[0]),
        n if n.ends_with("member_ids") => id(&v.members[1]),
        n if n.ends_with("family_id") => id(&v.family),
        "consult_id" => id(&v.consult),
        "consent_id" => id(&v.consent),
        "attachment_id" => id(&v.attachment),
        "device_id" | "device_ids" => id(&v.device),
        n if n.ends_with("professional_id") || n.ends_with("specialist_id") => id(&v.professional),
        "new_contact_person_id" => id(&v.professional),
        "request_id" => id(&Uuid::new_v4()),
        _ => Some("Controle van de toegang".to_owned()),
    }
}

fn bytes_for(name: &str, v: &Values) -> Option<Vec<u8>> {
    match name {
        "mls_message" => Some(v.mls_message.clone()),
        "commit" => Some(v.commit.clone()),
        "signature_public_key" | "sha256" => Some(vec![7; 32]),
        "key_packages" | "last_resort_key_package" | "welcome" => None,
        _ => Some(b"x".to_vec()),
    }
}

fn number_for(name: &str, v: &Values) -> Option<u64> {
    match name {
        "epoch" => Some(v.epoch),
        "from_sequence" => Some(1),
        "size_bytes" => Some(100),
        _ => None,
    }
}

/// A time a field of that name takes: a start just behind now, anything
/// else a day ahead.
fn timestamp(desc: &MessageDescriptor, name: &str, now: SystemTime) -> DynamicMessage {
    let hour = std::time::Duration::from_secs(3600);
    let at = match name {
        "valid_from" | "period_start" | "start_time" => now - hour,
        _ => now + 24 * hour,
    };
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970");
    let mut message = DynamicMessage::new(desc.clone());
    message.set_field_by_name("seconds", Value::I64(since.as_secs() as i64));
    message
}

/// What the server answered.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The status (OK for a unary answer or a stream that went on).
    pub(crate) code: Code,
    /// The status message.
    pub(crate) message: String,
    /// Every answer message received, as bytes.
    pub(crate) received: Vec<Vec<u8>>,
}

impl Answer {
    fn from_status(status: &Status) -> Answer {
        Answer {
            code: status.code(),
            message: status.message().to_owned(),
            received: Vec::new(),
        }
    }

    /// Whether the answer is a refusal to the caller: the caller is not
    /// known, may not, or the object does not exist for them.
    pub(crate) fn is_denial(&self) -> bool {
        matches!(
            self.code,
            Code::Unauthenticated | Code::PermissionDenied | Code::NotFound
        )
    }

    /// Whether any of `needles` shows in the answer: its message or bytes.
    pub(crate) fn shows(&self, needles: &[String]) -> Option<String> {
        needles
            .iter()
            .find(|n| {
                self.message.contains(n.as_str())
                    || self
                        .received
                        .iter()
                        .any(|r| r.windows(n.len()).any(|w| w == n.as_bytes()))
            })
            .cloned()
    }
}

/// Calls `method` with the messages `body` (one, unless the caller
/// streams), acting as `professional`. A server stream is read until it
/// ends, fails, or is quiet for a moment (a subscription never ends).
pub(crate) async fn call(
    channel: Channel,
    method: &Method,
    professional: Option<Uuid>,
    body: Vec<Vec<u8>>,
) -> Answer {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("the connection is ready");
    let path = PathAndQuery::try_from(format!("/samenop.v1.{}", method.name)).expect("a path");
    let dress = |request| acting(request, professional);
    let first = body.first().cloned().unwrap_or_default();
    match (method.client_streaming, method.server_streaming) {
        (false, false) => answered(
            grpc.unary(dress(tonic::Request::new(first)), path, Raw)
                .await,
        ),
        (true, false) => {
            let stream = acting(tonic::Request::new(tokio_stream::iter(body)), professional);
            answered(grpc.client_streaming(stream, path, Raw).await)
        }
        (false, true) => {
            match grpc
                .server_streaming(dress(tonic::Request::new(first)), path, Raw)
                .await
            {
                Ok(answer) => read_stream(answer.into_inner()).await,
                Err(status) => Answer::from_status(&status),
            }
        }
        (true, true) => panic!("{}: no samenop.v1 call streams both ways", method.name),
    }
}

/// The answer of a call with one answer message.
fn answered(result: Result<tonic::Response<Vec<u8>>, Status>) -> Answer {
    match result {
        Ok(answer) => Answer {
            code: Code::Ok,
            message: String::new(),
            received: vec![answer.into_inner()],
        },
        Err(status) => Answer::from_status(&status),
    }
}

/// `request`, acting as `professional`.
fn acting<T>(mut request: tonic::Request<T>, professional: Option<Uuid>) -> tonic::Request<T> {
    if let Some(id) = professional {
        request.metadata_mut().insert(
            samenop_proto::PROFESSIONAL_METADATA_KEY,
            id.to_string().parse().expect("metadata"),
        );
    }
    request
}

async fn read_stream(mut stream: tonic::Streaming<Vec<u8>>) -> Answer {
    let mut answer = Answer {
        code: Code::Ok,
        message: String::new(),
        received: Vec::new(),
    };
    let quiet = std::time::Duration::from_millis(300);
    while answer.received.len() < 64 {
        match tokio::time::timeout(quiet, stream.message()).await {
            Ok(Ok(Some(message))) => answer.received.push(message),
            Ok(Ok(None)) | Err(_) => break,
            Ok(Err(status)) => {
                answer.code = status.code();
                answer.message = status.message().to_owned();
                break;
            }
        }
    }
    answer
}

/// A codec of raw bytes: the request as built, the answer as received.
#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}
