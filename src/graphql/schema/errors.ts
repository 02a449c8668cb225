import { InvalidInputError } from '../../errors.ts';
import type { AppError, InputIssue } from '../../errors.ts';
import { builder } from '../builder.ts';

export const ErrorInterface = builder.interfaceRef<AppError>('Error').implement({
  fields: (t) => ({
    message: t.exposeString('message'),
  }),
});

const InputIssueRef = builder.objectRef<InputIssue>('InputIssue').implement({
  fields: (t) => ({
    path: t.exposeStringList('path'),
    message: t.exposeString('message'),
  }),
});

builder.objectType(InvalidInputError, {
  name: 'InvalidInputError',
  interfaces: [ErrorInterface],
  fields: (t) => ({
    issues: t.field({ type: [InputIssueRef], resolve: (error) => error.issues }),
  }),
});
