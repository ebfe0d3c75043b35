//! The body of `POST /orders` and its validation into an `OrderPlaced` payload. Bounds keep one
//! request from producing an event too large for a Kafka record or an order no one can pay.

use schemas::{Address, Money, OrderItem, OrderPlaced, DEFAULT_CURRENCY};
use serde::Deserialize;
use utoipa::ToSchema;

const MAX_ID_LEN: usize = 64;
const MAX_ITEMS: usize = 100;
const MAX_QUANTITY: i32 = 10_000;
/// One million euros per unit, in cents.
const MAX_UNIT_PRICE_CENTS: i64 = 100_000_000;
const MAX_ADDRESS_FIELD_LEN: usize = 200;
const MAX_POSTAL_CODE_LEN: usize = 16;
const MAX_COUPON_CODE_LEN: usize = 32;

// The schema's bounds repeat the ones `validate` enforces (text is trimmed first), so a client
// generated from the OpenAPI document knows them (a test keeps the two equal); `validate` stays
// the authority.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderRequest {
    #[schema(min_length = 1, max_length = 64)]
    pub customer_id: String,
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<ItemRequest>,
    pub shipping_address: AddressRequest,
    /// ISO 4217 code of every amount in the order; `EUR` when left out.
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
    #[schema(min_length = 1, max_length = 32)]
    pub coupon_code: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemRequest {
    #[schema(min_length = 1, max_length = 64)]
    pub product_id: String,
    #[schema(minimum = 1, maximum = 10_000)]
    pub quantity: i64,
    /// In the minor unit of the order's currency (cents for EUR).
    #[schema(minimum = 1, maximum = 100_000_000)]
    pub unit_price: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressRequest {
    #[schema(min_length = 1, max_length = 200)]
    pub line1: String,
    #[schema(min_length = 1, max_length = 200)]
    pub line2: Option<String>,
    #[schema(min_length = 1, max_length = 200)]
    pub city: String,
    #[schema(min_length = 1, max_length = 16)]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    #[schema(pattern = "^[A-Z]{2}$")]
    pub country: String,
}

/// A field with a value the order service does not accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ValidationError {
    /// The field's path in the request body, e.g. `items[2].quantity`.
    pub field: String,
    pub problem: String,
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ValidationError {
    ValidationError { field: field.into(), problem: problem.into() }
}

impl PlaceOrderRequest {
    /// The `OrderPlaced` payload this request asks for, or the first field that is wrong.
    pub fn validate(self) -> Result<OrderPlaced, ValidationError> {
        let customer_id = required_text("customer_id", self.customer_id, MAX_ID_LEN)?;
        let currency = match self.currency {
            None => DEFAULT_CURRENCY.to_string(),
            Some(code) => {
                let code = code.trim().to_string();
                if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(invalid("currency", "must be an ISO 4217 code such as EUR"));
                }
                code
            }
        };
        let coupon_code =
            self.coupon_code.map(|code| required_text("coupon_code", code, MAX_COUPON_CODE_LEN)).transpose()?;
        if self.items.is_empty() {
            return Err(invalid("items", "must contain at least one item"));
        }
        if self.items.len() > MAX_ITEMS {
            return Err(invalid("items", format!("must contain at most {MAX_ITEMS} items")));
        }
        let items = self
            .items
            .into_iter()
            .enumerate()
            .map(|(index, item)| item.validate(index, &currency))
            .collect::<Result<Vec<_>, _>>()?;
        // Cannot overflow: the bounds above cap the total at 10^14 cents.
        let total_cents = items.iter().map(|item| i64::from(item.quantity) * item.unit_price_cents).sum();
        let shipping_address = self.shipping_address.validate()?;
        Ok(OrderPlaced { customer_id, items, total_cents, shipping_address, currency, coupon_code })
    }
}

impl ItemRequest {
    fn validate(self, index: usize, currency: &str) -> Result<OrderItem, ValidationError> {
        let field = |name: &str| format!("items[{index}].{name}");
        let product_id = required_text(&field("product_id"), self.product_id, MAX_ID_LEN)?;
        let quantity = i32::try_from(self.quantity)
            .ok()
            .filter(|quantity| (1..=MAX_QUANTITY).contains(quantity))
            .ok_or_else(|| invalid(field("quantity"), format!("must be between 1 and {MAX_QUANTITY}")))?;
        if !(1..=MAX_UNIT_PRICE_CENTS).contains(&self.unit_price) {
            return Err(invalid(
                field("unit_price"),
                format!("must be a positive amount in the currency's minor unit, at most {MAX_UNIT_PRICE_CENTS}"),
            ));
        }
        Ok(OrderItem::new(product_id, quantity, Money::new(self.unit_price, currency)))
    }
}

impl AddressRequest {
    fn validate(self) -> Result<Address, ValidationError> {
        let country = self.country.trim().to_string();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid("shipping_address.country", "must be an ISO 3166-1 alpha-2 code such as DE"));
        }
        Ok(Address {
            line1: required_text("shipping_address.line1", self.line1, MAX_ADDRESS_FIELD_LEN)?,
            line2: self
                .line2
                .map(|line| required_text("shipping_address.line2", line, MAX_ADDRESS_FIELD_LEN))
                .transpose()?,
            city: required_text("shipping_address.city", self.city, MAX_ADDRESS_FIELD_LEN)?,
            postal_code: required_text("shipping_address.postal_code", self.postal_code, MAX_POSTAL_CODE_LEN)?,
            country,
        })
    }
}

/// Trimmed text that is neither empty nor longer than `max_chars`, nor holds control characters.
fn required_text(field: &str, value: String, max_chars: usize) -> Result<String, ValidationError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.chars().count() > max_chars {
        return Err(invalid(field, format!("must be at most {max_chars} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> PlaceOrderRequest {
        PlaceOrderRequest {
            customer_id: " c-1 ".into(),
            items: vec![
                ItemRequest { product_id: "p-1".into(), quantity: 2, unit_price: 150 },
                ItemRequest { product_id: "p-2".into(), quantity: 1, unit_price: 999 },
            ],
            shipping_address: AddressRequest {
                line1: "1 Main St".into(),
                line2: None,
                city: "Berlin".into(),
                postal_code: "10115".into(),
                country: "DE".into(),
            },
            currency: None,
            coupon_code: None,
        }
    }

    fn field_of(request: PlaceOrderRequest) -> String {
        request.validate().expect_err("must be refused").field
    }

    #[test]
    fn the_documented_bounds_are_the_validated_ones() {
        use utoipa::PartialSchema;
        let order = serde_json::to_value(PlaceOrderRequest::schema()).unwrap();
        let item = serde_json::to_value(ItemRequest::schema()).unwrap();
        let address = serde_json::to_value(AddressRequest::schema()).unwrap();
        assert_eq!(order["properties"]["customer_id"]["maxLength"], MAX_ID_LEN);
        assert_eq!(order["properties"]["items"]["maxItems"], MAX_ITEMS);
        assert_eq!(item["properties"]["product_id"]["maxLength"], MAX_ID_LEN);
        assert_eq!(item["properties"]["quantity"]["maximum"], MAX_QUANTITY);
        assert_eq!(item["properties"]["unit_price"]["maximum"], MAX_UNIT_PRICE_CENTS);
        assert_eq!(address["properties"]["line1"]["maxLength"], MAX_ADDRESS_FIELD_LEN);
        assert_eq!(address["properties"]["city"]["maxLength"], MAX_ADDRESS_FIELD_LEN);
        assert_eq!(address["properties"]["postal_code"]["maxLength"], MAX_POSTAL_CODE_LEN);
        assert_eq!(address["properties"]["line2"]["maxLength"], MAX_ADDRESS_FIELD_LEN);
        assert_eq!(order["properties"]["coupon_code"]["maxLength"], MAX_COUPON_CODE_LEN);
    }

    #[test]
    fn a_valid_request_becomes_order_placed_with_its_total() {
        let placed = request().validate().expect("valid");
        assert_eq!(placed.customer_id, "c-1");
        assert_eq!(placed.total_cents, 2 * 150 + 999);
        assert_eq!(placed.items[1].unit_price_cents, 999);
        assert_eq!(placed.items[1].unit_price, Some(Money::new(999, "EUR")), "EUR when no currency is given");
        assert_eq!(placed.shipping_address.country, "DE");
        assert_eq!((placed.coupon_code, placed.shipping_address.line2), (None, None));
    }

    #[test]
    fn the_v2_fields_reach_order_placed() {
        let mut r = request();
        r.currency = Some("CHF".into());
        r.coupon_code = Some(" WINTER-10 ".into());
        r.shipping_address.line2 = Some("Hinterhaus".into());
        let placed = r.validate().expect("valid");
        assert_eq!(placed.currency, "CHF");
        assert_eq!(placed.items[0].unit_price, Some(Money::new(150, "CHF")));
        assert_eq!(placed.coupon_code.as_deref(), Some("WINTER-10"));
        assert_eq!(placed.shipping_address.line2.as_deref(), Some("Hinterhaus"));
    }

    #[test]
    fn each_bad_field_is_named() {
        let mut r = request();
        r.customer_id = "  ".into();
        assert_eq!(field_of(r), "customer_id");

        let mut r = request();
        r.items.clear();
        assert_eq!(field_of(r), "items");

        let mut r = request();
        r.items[1].quantity = 0;
        assert_eq!(field_of(r), "items[1].quantity");

        let mut r = request();
        r.items[0].quantity = i64::from(i32::MAX) + 1;
        assert_eq!(field_of(r), "items[0].quantity");

        let mut r = request();
        r.items[0].unit_price = -5;
        assert_eq!(field_of(r), "items[0].unit_price");

        let mut r = request();
        r.items[0].product_id = "x".repeat(MAX_ID_LEN + 1);
        assert_eq!(field_of(r), "items[0].product_id");

        let mut r = request();
        r.items = (0..=MAX_ITEMS).map(|_| ItemRequest { product_id: "p".into(), quantity: 1, unit_price: 1 }).collect();
        assert_eq!(field_of(r), "items");

        let mut r = request();
        r.shipping_address.country = "Germany".into();
        assert_eq!(field_of(r), "shipping_address.country");

        let mut r = request();
        r.shipping_address.city = "Ber\u{0}lin".into();
        assert_eq!(field_of(r), "shipping_address.city");

        let mut r = request();
        r.currency = Some("euro".into());
        assert_eq!(field_of(r), "currency");

        let mut r = request();
        r.coupon_code = Some("x".repeat(MAX_COUPON_CODE_LEN + 1));
        assert_eq!(field_of(r), "coupon_code");

        let mut r = request();
        r.shipping_address.line2 = Some(" ".into());
        assert_eq!(field_of(r), "shipping_address.line2");
    }
}
