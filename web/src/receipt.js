// The receipt of a paid purchase (GET /v1/purchases/{id}: `receipt`): shown on the page, printable
// (the print stylesheet prints the receipt alone) and downloadable as a PDF made by jsPDF
// (vendored, loaded only when asked for). The PDF is drawn from the receipt as the page shows it
// (a canvas in the browser's fonts, so Korean needs no embedded font), one A4 page.

import { amountText, credits, timeText } from "./format.js";
import { t } from "./i18n.js";
import { $, el, setText } from "./shared.js";

let current = null;

export function showReceipt(purchase) {
  const r = purchase.receipt;
  const box = $("receipt");
  if (!r) { box.hidden = true; return; }
  current = purchase;
  const rows = [
    [t("Receipt number"), r.number],
    [t("Credits"), credits(r.credits)],
    [t("Price"), amountText(r.price)],
    [t("Paid at"), timeText(r.paid_at)],
    [t("Payment reference"), r.payment_reference],
  ];
  if (purchase.refund) rows.push([t("Refunded"), amountText(purchase.refund)]);
  $("receipt-details").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v ?? "—" })]));
  box.hidden = false;
  $("receipt-title").focus();
}

function receiptCanvas() {
  const rows = [...$("receipt-details").children];
  const scale = 2;
  const canvas = document.createElement("canvas");
  canvas.width = 595 * scale;
  canvas.height = (120 + rows.length * 14) * scale;
  const g = canvas.getContext("2d");
  g.scale(scale, scale);
  g.fillStyle = "#fff";
  g.fillRect(0, 0, 595, canvas.height);
  g.fillStyle = "#1d2330";
  const font = getComputedStyle(document.body).fontFamily;
  g.font = `600 20px ${font}`;
  g.fillText($("receipt-title").textContent, 48, 60);
  g.font = `13px ${font}`;
  for (let i = 0; i < rows.length; i += 2) {
    const y = 100 + i * 14;
    g.fillStyle = "#5b6474";
    g.fillText(rows[i].textContent, 48, y);
    g.fillStyle = "#1d2330";
    g.fillText(rows[i + 1].textContent, 220, y);
  }
  return canvas;
}

function loadJsPdf() {
  if (window.jspdf) return Promise.resolve(window.jspdf);
  const src = document.querySelector('meta[name="billing-pdf-js"]')?.content;
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = src;
    script.onload = () => resolve(window.jspdf);
    script.onerror = () => { script.remove(); reject(new Error("jsPDF did not load")); };
    document.head.append(script);
  });
}

async function downloadPdf() {
  setText("receipt-status", "");
  try {
    const { jsPDF } = await loadJsPdf();
    const canvas = receiptCanvas();
    const doc = new jsPDF({ unit: "pt", format: "a4" });
    doc.setProperties({ title: `${t("Receipt")} ${current.receipt.number}` });
    doc.addImage(canvas.toDataURL("image/png"), "PNG", 0, 0, 595, canvas.height / 2);
    doc.save(`receipt-${current.receipt.number}.pdf`);
    setText("receipt-status", t("Downloaded {name}.", { name: `receipt-${current.receipt.number}.pdf` }));
  } catch {
    setText("receipt-status", t("The PDF could not be made. Print the receipt instead."));
  }
}

export function wireReceipt() {
  $("receipt-print").addEventListener("click", () => window.print());
  $("receipt-pdf").addEventListener("click", downloadPdf);
  $("receipt-close").addEventListener("click", () => { $("receipt").hidden = true; });
}
