export { serverOptionsFrom } from './commands/serve.js';
export { main } from './main.js';
