// The keyboard map: which command each shortcut means, and where the focus keeps a key for itself.
import { describe, expect, it } from 'vitest';
import { type KeyPress, keyCommand } from './keys';

const press = (key: string, more: Partial<KeyPress> = {}): KeyPress => ({ key, ctrlKey: false, metaKey: false, shiftKey: false, focus: 'other', ...more });

describe('keyCommand', () => {
  it('maps the shortcuts', () => {
    expect(keyCommand(press('?'))).toEqual({ kind: 'help' });
    expect(keyCommand(press('Escape'))).toEqual({ kind: 'escape' });
    expect(keyCommand(press('z', { ctrlKey: true }))).toEqual({ kind: 'undo' });
    expect(keyCommand(press('Z', { metaKey: true, shiftKey: true }))).toEqual({ kind: 'redo' });
    expect(keyCommand(press('y', { ctrlKey: true }))).toEqual({ kind: 'redo' });
    expect(keyCommand(press('Enter'))).toEqual({ kind: 'accept' });
    expect(keyCommand(press('1'))).toEqual({ kind: 'rank', rank: 0 });
    expect(keyCommand(press('3'))).toEqual({ kind: 'rank', rank: 2 });
    expect(keyCommand(press('Tab'))).toEqual({ kind: 'cycle', back: false });
    expect(keyCommand(press('Tab', { shiftKey: true }))).toEqual({ kind: 'cycle', back: true });
  });

  it('leaves other keys and modified digits alone', () => {
    expect(keyCommand(press('z'))).toBeNull();
    expect(keyCommand(press('4'))).toBeNull();
    expect(keyCommand(press('1', { ctrlKey: true }))).toBeNull();
    expect(keyCommand(press('Tab', { ctrlKey: true }))).toBeNull();
  });

  it('lets text fields keep every key and buttons keep Enter and Tab', () => {
    expect(keyCommand(press('Escape', { focus: 'text' }))).toBeNull();
    expect(keyCommand(press('z', { ctrlKey: true, focus: 'text' }))).toBeNull();
    expect(keyCommand(press('Enter', { focus: 'button' }))).toBeNull();
    expect(keyCommand(press('Tab', { focus: 'button' }))).toBeNull();
    expect(keyCommand(press('2', { focus: 'button' }))).toEqual({ kind: 'rank', rank: 1 });
  });
});
