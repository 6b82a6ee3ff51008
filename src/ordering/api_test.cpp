// CartJsonText and OrderJsonText must write exactly the bytes DumpJson(CartJson(...)) and
// DumpJson(OrderJson(...)) write: the stored Idempotency-Key answers and the HTTP bodies stay
// what they were.
#include "ordering/api.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace emporium::ordering {
namespace {

Money Eur(int64_t minor) { return Money::FromMinor(minor, "EUR").value(); }

PricedLine Line(std::string sku, std::string title, int64_t quantity, int64_t unit_minor) {
  return PricedLine{std::move(sku), std::move(title), quantity, Eur(unit_minor),
                    Eur(unit_minor * quantity)};
}

CartView FullCart() {
  CartView view;
  Cart& cart = view.cart;
  cart.id = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
  cart.currency = "EUR";
  cart.region = "eu-west";
  cart.email = "guest@example.com";
  cart.shipping_address = Json{{"country", "DE"}, {"city", "Berlin"}, {"lines", {"a", 1}}};
  cart.lines = {{"SKU-1", 2}, {"SKU-2", 1}};
  cart.reservation_id = "cart-0193-2";
  cart.reservation = CartReservation::kReserved;
  cart.reservation_expires_at_ms = 1'790'000'123'456;
  cart.version = 3;
  cart.created_at_ms = 1'790'000'000'000;
  cart.updated_at_ms = 1'790'000'000'500;
  view.lines = {Line("SKU-1", "Lamp", 2, 1999), Line("SKU-2", "Chair", 1, 4550)};
  view.totals = Totals{Eur(8548), Eur(499), Eur(1719), Eur(10766)};
  return view;
}

void ExpectSameCart(const CartView& view) {
  EXPECT_EQ(CartJsonText(view), DumpJson(CartJson(view)));
}

TEST(CartJsonTextTest, PricedReservedCartIsWrittenAsTheDomWritesIt) { ExpectSameCart(FullCart()); }

TEST(CartJsonTextTest, EmptyCartIsWrittenAsTheDomWritesIt) { ExpectSameCart(CartView{}); }

TEST(CartJsonTextTest, EveryReservationAndCartStatusIsWrittenAsTheDomWritesIt) {
  for (CartReservation reservation :
       {CartReservation::kNone, CartReservation::kPending, CartReservation::kReserved,
        CartReservation::kFailed, CartReservation::kReleased}) {
    for (CartStatus status : {CartStatus::kOpen, CartStatus::kCheckedOut, CartStatus::kAbandoned}) {
      CartView view = FullCart();
      view.cart.reservation = reservation;
      view.cart.status = status;
      if (status == CartStatus::kCheckedOut) view.cart.order_id = "0193ffff";
      if (reservation == CartReservation::kFailed) {
        view.cart.reservation_short_skus = {"SKU-1", "SKU-9"};
      }
      ExpectSameCart(view);
    }
  }
}

TEST(CartJsonTextTest, UnpricedCartAndHostileStringsAreWrittenAsTheDomWritesThem) {
  CartView view = FullCart();
  view.totals.reset();
  view.pricing_problem = "no EUR price for: SKU-\"3\"";
  view.cart.email = "a\\b\"c\n\x01@example.com";
  view.cart.region = "caf\xc3\xa9";
  view.cart.shipping_address = Json::object();
  view.lines[0].title = "bad \xff utf8 \xe2\x82";  // invalid UTF-8: replaced as the DOM does
  view.lines[1].sku = "\xf0\x9f\x98\x80";
  view.cart.lines = {{"\x1f", 99}};
  ExpectSameCart(view);
  view.cart.shipping_address = nullptr;
  ExpectSameCart(view);
}

TEST(CartJsonTextTest, AmountsOutsideTheCurrencyAreWrittenAsTheDomWritesThem) {
  CartView view = FullCart();
  view.lines[0].unit_price = Money::FromMinor(-5, "JPY").value();
  view.lines[0].line_total = Money::FromMinor(int64_t{9'000'000'000'000'000'000}, "BHD").value();
  ExpectSameCart(view);
}

Order FullOrder() {
  Order order;
  order.id = "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b";
  order.cart_id = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
  order.email = "guest@example.com";
  order.currency = "EUR";
  order.region = "eu-west";
  order.shipping_address = Json{{"country", "DE"}};
  order.subtotal_minor = 8548;
  order.shipping_minor = 499;
  order.tax_minor = 1719;
  order.total_minor = 10766;
  order.lines = {Line("SKU-1", "Lamp", 2, 1999)};
  order.saga.order_state = OrderState::kConfirmed;
  order.saga.step = SagaStep::kDone;
  order.saga.reservation_id = "cart-0193-2";
  order.saga.authorized = true;
  order.version = 6;
  order.created_at_ms = 1'790'000'000'000;
  order.updated_at_ms = 1'790'000'000'900;
  return order;
}

TEST(OrderJsonTextTest, OrdersAreWrittenAsTheDomWritesThem) {
  Order order = FullOrder();
  EXPECT_EQ(OrderJsonText(order), DumpJson(OrderJson(order)));
  EXPECT_EQ(OrderJsonText(Order{}), DumpJson(OrderJson(Order{})));
  order.saga.order_state = OrderState::kRejected;
  order.saga.step = SagaStep::kRelease;
  order.saga.attempt = 3;
  order.saga.deadline_ms = 1'790'000'001'000;
  order.saga.reason = "insufficient_stock \"x\"\n";
  order.saga.short_skus = {"SKU-1", "bad \xc3"};
  order.shipping_address = nullptr;
  order.currency = "XXX";  // unknown currency: amounts written as ""
  EXPECT_EQ(OrderJsonText(order), DumpJson(OrderJson(order)));
}

}  // namespace
}  // namespace emporium::ordering
