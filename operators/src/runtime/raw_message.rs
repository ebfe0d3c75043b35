//! Turns a consumed message into a [`RawRecord`] without trusting its bytes: rdkafka's own
//! header accessor panics on a header key that is not UTF-8.

use std::ffi::CStr;

use rdkafka::bindings as rdsys;
use rdkafka::message::{BorrowedMessage, Message};

use crate::record::{Header, RawRecord};

pub fn raw_record(message: &BorrowedMessage<'_>) -> RawRecord {
    RawRecord {
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis().unwrap_or(0),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers: headers(message),
    }
}

/// Every header in order. A key that is not UTF-8 is kept, lossily decoded; a null value stays
/// null.
fn headers(message: &BorrowedMessage<'_>) -> Vec<Header> {
    let mut native: *mut rdsys::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: the message is alive for this call; librdkafka owns the headers it points to.
    let found = unsafe { rdsys::rd_kafka_message_headers(message.ptr(), &mut native) };
    if found != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || native.is_null() {
        return Vec::new();
    }
    // SAFETY: `native` was just returned for this live message.
    let count = unsafe { rdsys::rd_kafka_header_cnt(native) };
    let mut headers = Vec::with_capacity(count);
    for index in 0..count {
        let (mut name, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0usize);
        // SAFETY: index < count; the out pointers are valid for writes.
        let err = unsafe { rdsys::rd_kafka_header_get_all(native, index, &mut name, &mut value, &mut size) };
        if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            continue;
        }
        // SAFETY: librdkafka's header names are NUL-terminated; values are `size` bytes.
        let key = unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned();
        let value =
            (!value.is_null()).then(|| unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) }.to_vec());
        headers.push(Header { key, value });
    }
    headers
}
