//! The codec of every `samenop.v1` service: prost's encoding, with decoding
//! failures put where they belong.
//!
//! tonic's prost codec answers any message that does not decode with
//! INTERNAL, which tells every gRPC client, retry policy and alerting rule
//! "the server's fault". A request that does not decode is the caller's
//! fault: the server answers INVALID_ARGUMENT naming the request type, for
//! unary and streaming calls alike (a bad message in the middle of a client
//! stream too). An answer that does not decode, as a client sees it, stays
//! INTERNAL, naming the answer type. Which one a message is follows from its
//! type: `buf lint` (STANDARD) makes every request type end in `Request` and
//! every answer type in `Response`.

use std::marker::PhantomData;

use prost::{Message, Name};
use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
};

/// The codec of the generated services and clients (see the module
/// documentation).
#[derive(Debug, Clone)]
pub struct SamenopCodec<T, U> {
    /// The types encoded and decoded.
    types: PhantomData<(T, U)>,
}

impl<T, U> Default for SamenopCodec<T, U> {
    fn default() -> Self {
        SamenopCodec { types: PhantomData }
    }
}

impl<T, U> Codec for SamenopCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Name + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = SamenopEncoder<T>;
    type Decoder = SamenopDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        SamenopEncoder { types: PhantomData }
    }

    fn decoder(&mut self) -> Self::Decoder {
        SamenopDecoder {
            types: PhantomData,
            buffer_settings: buffers(),
        }
    }
}

/// The buffers each call's encoding and decoding starts with: 1 KiB, where
/// tonic's default is 8 KiB. Most requests and answers are smaller, a buffer
/// grows for those that are not, and glibc's malloc serves a request of up
/// to 1,032 bytes from its per-thread cache, while a larger one first
/// consolidates its free lists (1.5% of the server's CPU under B1's load).
/// A subscription holds its encoding buffer as long as it lives.
fn buffers() -> BufferSettings {
    // What a stream of answers gathers before it yields: tonic's default.
    BufferSettings::new(1024, 32 * 1024)
}

/// Decodes `U`, failing as the module documentation says.
#[derive(Debug, Clone)]
pub struct SamenopDecoder<U> {
    /// The type decoded.
    types: PhantomData<U>,
    /// See [`buffers`].
    buffer_settings: BufferSettings,
}

/// Encodes `T` with prost, its whole length reserved first: a message
/// larger than the buffer grows it once, not step by step as prost writes.
#[derive(Debug, Clone)]
pub struct SamenopEncoder<T> {
    /// The type encoded.
    types: PhantomData<T>,
}

impl<T: Message> Encoder for SamenopEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf)
            .map_err(|err| Status::internal(format!("cannot encode the message: {err}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        buffers()
    }
}

impl<U: Message + Name + Default> Decoder for SamenopDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|err| undecodable(&U::full_name(), &err))
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.buffer_settings
    }
}

/// The status for a message of type `name` that failed to decode. prost's
/// error names the field path and the wire problem, never a value.
fn undecodable(name: &str, err: &prost::DecodeError) -> Status {
    if name.ends_with("Request") {
        Status::invalid_argument(format!("the request is not a valid {name}: {err}"))
    } else {
        Status::internal(format!("the answer is not a valid {name}: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_the_callers_fault_and_answers_the_servers() {
        let err = crate::v1::GetConsultRequest::decode(&b"\x0a\xff"[..]).unwrap_err();
        let status = undecodable(&crate::v1::GetConsultRequest::full_name(), &err);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status
                .message()
                .starts_with("the request is not a valid samenop.v1.GetConsultRequest"),
            "{}",
            status.message()
        );
        let status = undecodable(&crate::v1::GetConsultResponse::full_name(), &err);
        assert_eq!(status.code(), tonic::Code::Internal);
    }
}
