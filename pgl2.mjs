import { PGlite } from '@electric-sql/pglite';
let t0=Date.now();
let db = await PGlite.create('/tmp/pgltest'); console.log('reopen ms', Date.now()-t0); await db.close();
t0=Date.now(); db = await PGlite.create(); console.log('memory ms', Date.now()-t0);
t0=Date.now(); const d2 = await PGlite.create(); console.log('memory2 ms', Date.now()-t0);
t0=Date.now(); const dump = await db.dumpDataDir('none'); console.log('dump ms', Date.now()-t0, dump.size);
t0=Date.now(); const d3 = await PGlite.create({loadDataDir: dump}); console.log('load ms', Date.now()-t0);
