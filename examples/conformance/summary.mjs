// Summarises results of the HTTP caching test suite (github.com/http-tests/cache-tests)
// per test group, beside the suite's published results for reverse proxies.
//
//   node summary.mjs SUITE_DIR LABEL=results.json [LABEL=results.json ...]
//
// Prints a Markdown table per group (required and optimal tests, passed/failed),
// then every failure of the first result set with the suite's message.
import path from 'node:path'
import fs from 'node:fs'
import { pathToFileURL } from 'node:url'

const [suiteDir, ...sets] = process.argv.slice(2)
const load = async (p) => (await import(pathToFileURL(path.resolve(suiteDir, p)).href)).default
const suites = await load('tests/index.mjs')
const { determineTestResult, resultTypes } = await import(
  pathToFileURL(path.resolve(suiteDir, 'test-engine/lib/results.mjs')).href)

const peers = [
  ['nginx', 'results/nginx.json'],
  ['Varnish', 'results/varnish.json'],
  ['Squid', 'results/squid.json'],
  ['ATS', 'results/trafficserver.json'],
  ['httpd', 'results/apache.json']
]
const columns = sets.map(s => s.split('=')).map(([label, file]) => [label, JSON.parse(fs.readFileSync(file))])
for (const [label, file] of peers) {
  columns.push([label, JSON.parse(fs.readFileSync(path.resolve(suiteDir, file)))])
}

function tally (suite, results) {
  const t = { req: [0, 0], opt: [0, 0], other: 0 }
  for (const test of suite.tests) {
    if (results[test.id] === undefined) continue
    const r = determineTestResult(suites, test.id, results)
    const required = test.kind === undefined || test.kind === 'required'
    if (test.kind === 'check') continue
    if (r === resultTypes.pass) (required ? t.req : t.opt)[0]++
    else if (r === resultTypes.fail) t.req[1]++
    else if (r === resultTypes.optional_fail) t.opt[1]++
    else t.other++
  }
  return t
}

const cell = (t) => `${t.req[0]}/${t.req[0] + t.req[1]} · ${t.opt[0]}/${t.opt[0] + t.opt[1]}` + (t.other ? ` (${t.other}⚪)` : '')
console.log('Each cell: required passed/run · optimal passed/run (⚪: not judged: a dependency failed, setup or harness failure).\n')
console.log(`| group | ${columns.map(c => c[0]).join(' | ')} |`)
console.log(`|---|${columns.map(() => '---').join('|')}|`)
const totals = columns.map(() => ({ req: [0, 0], opt: [0, 0], other: 0 }))
for (const suite of suites) {
  const row = columns.map(([, results], i) => {
    const t = tally(suite, results)
    totals[i].req[0] += t.req[0]; totals[i].req[1] += t.req[1]
    totals[i].opt[0] += t.opt[0]; totals[i].opt[1] += t.opt[1]
    totals[i].other += t.other
    return cell(t)
  })
  console.log(`| ${suite.name} | ${row.join(' | ')} |`)
}
console.log(`| **all** | ${totals.map(cell).join(' | ')} |`)
console.log('\nRequired failures: ' + columns.map(([label], i) => `${label} ${totals[i].req[1]}`).join(', '))
console.log('Optimal passed: ' + columns.map(([label], i) => `${label} ${totals[i].opt[0]}`).join(', '))

const [label, ours] = columns[0]
console.log(`\n### What ${label} fails\n`)
for (const suite of suites) {
  for (const test of suite.tests) {
    if (ours[test.id] === undefined || test.kind === 'check') continue
    const r = determineTestResult(suites, test.id, ours)
    if (r === resultTypes.pass) continue
    const kind = test.kind || 'required'
    const why = Array.isArray(ours[test.id]) ? ours[test.id].join(': ') : String(ours[test.id])
    const state = r === resultTypes.dependency_fail ? 'dependency failed' : why
    console.log(`- \`${test.id}\` (${suite.name}, ${kind}): ${test.name} — ${state}`)
  }
}
