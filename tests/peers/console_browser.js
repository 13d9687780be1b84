// Drives the gateway's web console in headless Chromium (playwright-core), as a person would.
// Environment: BASE (the gateway), CHROMIUM (its executable), ADMIN_KEY, LIMITED_KEY, SHOTS (a
// directory for screenshots). Every check throws on failure: the exit status is the verdict,
// and the last line printed is a JSON summary for the Rust test to check further.
const { chromium } = require('playwright-core');

const base = process.env.BASE;
const shots = process.env.SHOTS;

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
}

async function shot(page, name) {
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
}

async function signIn(page, key) {
  await page.goto(`${base}/ui`);
  check(page.url().endsWith('/ui/login'), `an anonymous visit goes to the sign-in page (${page.url()})`);
  await page.fill('#key', key);
  await page.click('button[type=submit]');
  check(page.url().endsWith('/ui/servers'), `signed in, the servers page (${page.url()})`);
}

async function signOut(page) {
  await page.click('header button.link');
  check(page.url().endsWith('/ui/login'), 'signed out');
}

(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ['--headless', '--no-sandbox'] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const summary = {};
  try {
    // Sign-in: a wrong key is refused on the page, the right one signs in.
    await page.goto(`${base}/ui`);
    await page.fill('#key', 'sk-wrong-key');
    await page.click('button[type=submit]');
    check((await page.textContent('p.error')).includes('not one of this gateway'), 'a wrong key is refused');
    await shot(page, '1-sign-in');
    await signIn(page, process.env.ADMIN_KEY);
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === 'mcpmw_console');
    check(session && session.httpOnly && session.sameSite === 'Strict' && session.path === '/ui', `the session cookie is HttpOnly, Strict, /ui: ${JSON.stringify(session)}`);

    // Servers: both ready (the page is read again until they are).
    for (let i = 0; i < 40; i++) {
      const states = await page.$$eval('#servers tbody tr', (rows) => rows.map((r) => r.dataset.server + '=' + r.children[1].textContent.trim()));
      if (states.includes('ts=ready') && states.includes('gh=ready')) break;
      await page.waitForTimeout(250);
      await page.reload();
    }
    const states = await page.$$eval('#servers tbody tr', (rows) => rows.map((r) => r.dataset.server + '=' + r.children[1].textContent.trim()));
    check(states.includes('ts=ready') && states.includes('gh=ready'), `servers ready: ${states}`);
    summary.servers = states;
    await shot(page, '2-servers');

    // Tools: found by search, run from the form made of its schema.
    await page.click('nav a[href="/ui/tools"]');
    await page.fill('#q', 'echo');
    await page.click('form.search button');
    const found = await page.$$eval('#tools tbody tr td:first-child', (cells) => cells.map((c) => c.textContent.trim()));
    check(found.includes('ts__echo') && !found.includes('ts__headers'), `the search finds the echo tool only: ${found}`);
    await shot(page, '3-tools');
    await page.click('a[href="/ui/tool?name=ts__echo"]');
    await page.fill('[name="arg.text"]', 'hello from the console');
    await page.click('#try button[type=submit]');
    const result = await page.textContent('#result');
    check(result.includes('Done') && result.includes('hello from the console'), `the result shows: ${result}`);
    await shot(page, '4-try-it');

    // Activity: that call, with its arguments.
    await page.click('nav a[href="/ui/activity"]');
    let activity = '';
    // The trail is written in the background, in batches: up to 15 s on a loaded machine.
    for (let i = 0; i < 100; i++) {
      activity = await page.textContent('#activity');
      if (activity.includes('hello from the console')) break;
      await page.waitForTimeout(100);
      await page.reload();
    }
    check(activity.includes('ts__echo') && activity.includes('hello from the console'), `the call is on the activity page: ${activity}`);
    const chats = await page.$$eval('#chats tbody tr', (rows) => rows.map((r) => [...r.children].map((c) => c.textContent.trim())));
    check(chats.some((c) => c[1] === 'ada' && c[3] === 'm' && c[4] === '1'), `the parked chat's round is listed: ${JSON.stringify(chats)}`);
    await shot(page, '5-activity');

    // My connections: connect at the authorization server, confirm the code, disconnect.
    await page.click('nav a[href="/ui/connections"]');
    check((await page.textContent('#connections tr[data-server=gh]')).includes('not connected'), 'gh starts not connected');
    await page.click('#connections tr[data-server=gh] button');
    await shot(page, '6-connect');
    await page.click('#sign-in');
    await page.waitForSelector('#confirm-in-console');
    check((await page.textContent('body')).includes('continue '), 'the callback page shows the code');
    await shot(page, '7-callback');
    await page.click('#confirm-in-console');
    check((await page.inputValue('#code')).length > 0, 'the code is filled in');
    await page.click('#confirm button[type=submit]');
    check((await page.textContent('p.notice')).includes('Connected'), 'confirmed');
    check((await page.textContent('#connections tr[data-server=gh]')).includes('connected'), 'gh connected');
    await shot(page, '8-connected');
    summary.connected = true;

    // Pending: two parked chats wait for approval; approve one here, deny the other.
    await page.click('nav a[href="/ui/pending"]');
    const waiting = await page.$$eval('section.card', (cards) => cards.map((c) => c.dataset.request));
    const [approve, deny] = [process.env.APPROVE_REQUEST, process.env.DENY_REQUEST];
    check(waiting.length === 2 && waiting.includes(approve) && waiting.includes(deny), `two requests wait: ${waiting}`);
    check(waiting[0] === deny, 'the newest first');
    check((await page.textContent(`section.card[data-request="${approve}"]`)).includes('ts__headers'), 'it names the tool');
    await shot(page, '9-pending');
    await page.click(`section.card[data-request="${approve}"] button:has-text("Approve")`);
    check((await page.textContent('p.notice')).includes('Answered'), 'answered in the console');
    await page.click(`section.card[data-request="${deny}"] button:has-text("Deny")`);
    check((await page.textContent(`section.card[data-request="${deny}"]`)).includes('answered here'), 'both answered');
    summary.answered = [approve, deny];

    // Artifacts.
    await page.click('nav a[href="/ui/artifacts"]');
    await shot(page, '10-artifacts');

    await signOut(page);

    // A restricted key: only its tools, only its own activity, its own connections.
    await signIn(page, process.env.LIMITED_KEY);
    const restrictedServers = await page.$$eval('#servers tbody tr', (rows) => rows.map((r) => r.dataset.server));
    check(!(await page.$('form[action="/ui/reload"]')), 'no reload button for a restricted key');
    await page.click('nav a[href="/ui/tools"]');
    const tools = await page.$$eval('#tools tbody tr td:first-child', (cells) => cells.map((c) => c.textContent.trim()));
    check(tools.includes('ts__echo') && tools.every((t) => t === 'ts__echo' || t.startsWith('gh__')), `only its tools: ${tools}`);
    await page.click('a[href="/ui/tool?name=ts__echo"]');
    await page.fill('[name="arg.text"]', 'the limited key was here');
    await page.click('#try button[type=submit]');
    check((await page.textContent('#result')).includes('the limited key was here'), 'its call ran');
    await page.goto(`${base}/ui/tool?name=ts__headers`);
    check((await page.textContent('main')).includes('There is no tool'), 'another tool is as unknown as none');
    await page.click('nav a[href="/ui/activity"]');
    let own = '';
    // The trail is written in the background, in batches: up to 15 s on a loaded machine.
    for (let i = 0; i < 100; i++) {
      own = await page.textContent('#activity');
      if (own.includes('the limited key was here')) break;
      await page.waitForTimeout(100);
      await page.reload();
    }
    check(own.includes('the limited key was here') && !own.includes('hello from the console'), `only its own activity: ${own}`);
    await shot(page, '11-restricted-activity');
    await page.click('nav a[href="/ui/pending"]');
    check((await page.$$('section.card')).length === 0, 'another holder’s request is not shown');
    await page.click('nav a[href="/ui/connections"]');
    check((await page.textContent('#connections tr[data-server=gh]')).includes('not connected'), 'another holder’s account is not this one’s');
    summary.restricted = { servers: restrictedServers, tools };
    await signOut(page);

    // The first holder disconnects.
    await signIn(page, process.env.ADMIN_KEY);
    await page.click('nav a[href="/ui/connections"]');
    await page.click('#connections tr[data-server=gh] button.danger');
    check((await page.textContent('#connections tr[data-server=gh]')).includes('not connected'), 'disconnected');
    await shot(page, '12-disconnected');
    await signOut(page);
    console.log(JSON.stringify(summary));
  } catch (e) {
    await shot(page, 'failure').catch(() => {});
    console.error(e.stack || String(e));
    console.error('page: ' + page.url());
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
