import { loadConfig } from './../config.ts';
import { connectDatabase } from './database.ts';

const config = loadConfig(process.env);
const database = await connectDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
try {
  await database.migrate();
  console.log(`migrations applied (${database.driver}: ${database.location})`);
} finally {
  await database.close();
}
