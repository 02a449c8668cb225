import { builder } from '../builder.ts';
import './scalars.ts';
import './errors.ts';
import './tenant.ts';

export const schema = builder.toSchema();
import './omni-task.ts';
