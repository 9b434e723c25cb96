// Stripe.js, loaded only when a payment needs it, from the URL the page's configuration names
// (<meta name="billing-stripe-js">, with the publishable key in <meta name="billing-stripe-key">):
// js.stripe.com in production, the Stripe stand-in (localstripe) locally. One card element at a
// time, mounted where the payment or the card to save is asked for.

let stripe = null;
let card = null;
let loading = null;

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content || "";

export function stripeConfigured() {
  return Boolean(meta("billing-stripe-js") && meta("billing-stripe-key"));
}

export function loadStripe() {
  if (stripe) return Promise.resolve(stripe);
  if (!stripeConfigured()) return Promise.reject(new Error("Stripe is not configured"));
  loading ??= new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = meta("billing-stripe-js");
    script.onload = () => {
      try {
        stripe = window.Stripe(meta("billing-stripe-key"));
        resolve(stripe);
      } catch (err) { loading = null; reject(err); }
    };
    script.onerror = () => { loading = null; script.remove(); reject(new Error("Stripe.js did not load")); };
    document.head.append(script);
  });
  return loading;
}

export function mountCard(container) {
  if (card) card.unmount?.();
  card = stripe.elements({ locale: document.documentElement.lang || "auto" }).create("card", { hidePostalCode: true });
  card.mount(container);
  return card;
}

export async function payWithCard(clientSecret) {
  if (!stripe || !card) return { error: { message: "" } };
  return stripe.confirmCardPayment(clientSecret, { payment_method: { card } });
}

export async function saveCard(clientSecret) {
  if (!stripe || !card) return { error: { message: "" } };
  return stripe.confirmCardSetup(clientSecret, { payment_method: { card } });
}
