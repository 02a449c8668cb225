import { builder } from '../builder.ts';
import './scalars.ts';
import './enums.ts';
import './errors.ts';
import './usage.ts';
import './tenant.ts';

export const schema = builder.toSchema();
import './omni-task.ts';
import './webhook.ts';
