// Drives Open WebUI in headless Chromium: an approval request and a question, answered in chat.
import { chromium } from "../../tests/peers/node_modules/playwright-core/index.mjs";
const out = process.argv[2];
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
async function send(text) {
  const input = page.locator("#chat-input");
  await input.click();
  await input.fill(text);
  await page.keyboard.press("Enter");
}
async function waitFor(text) {
  await page.getByText(text, { exact: false }).last().waitFor({ timeout: 60000 });
  await page.waitForTimeout(1500);
}
await page.goto("http://127.0.0.1:8080/", { waitUntil: "domcontentloaded" });
await page.locator("#chat-input").waitFor({ timeout: 60000 }); await page.waitForTimeout(2000);
const okay = page.getByText("Okay, Let's Go!");
if (await okay.count()) { await okay.first().click(); await page.waitForTimeout(1000); }
await page.screenshot({ path: `${out}/0-start.png` });
await send("please echo hello");
await waitFor("Approval needed");
await page.screenshot({ path: `${out}/1-approval-request.png`, fullPage: true });
await send("approve");
await waitFor("Done. The tool said");
await page.screenshot({ path: `${out}/2-approved.png`, fullPage: true });
await page.goto("http://127.0.0.1:8080/", { waitUntil: "domcontentloaded" });
await page.waitForTimeout(2000);
await send("ask me who I am");
await waitFor("Who is asking?");
await page.screenshot({ path: `${out}/3-question.png`, fullPage: true });
await send("I'm Ada Lovelace, 36");
await waitFor("Done. The tool said");
await page.screenshot({ path: `${out}/4-answered.png`, fullPage: true });
await browser.close();
console.log("ok");
